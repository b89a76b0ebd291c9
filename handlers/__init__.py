"""artserve serving code: model, preprocessing and postprocessing, the classifier, plus the TorchServe handler.

Follow one image from HTTP bytes to JSON: ``art_handler.py`` (TorchServe glue: request parts, statuses,
metrics) -> ``classifier.py`` (decode, predict, encode) -> ``preprocessing.py`` (bytes -> uint8 tensor).
Only ``art_handler`` imports TorchServe (``ts.*``); every other module here is plain PyTorch/Pillow,
so training, evaluation and another serving engine can import them unchanged.
"""

#: The model's name: the archive's, the prediction URL's (``/predictions/art-category``) and the answers' ``model``.
MODEL_NAME = "art-category"
