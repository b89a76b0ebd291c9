"""artserve serving code: model, preprocessing and postprocessing, plus the TorchServe handler.

Only ``art_handler`` imports TorchServe (``ts.*``); every other module here is plain PyTorch/Pillow,
so training, evaluation and another serving engine can import them unchanged.
"""
