"""artserve deployment: the serving configuration (config.properties, model-config.yaml, metrics.yaml, read
as they are by `make serve` and by the Kubernetes ConfigMap), the archive, the local server, image, cluster."""

import shutil
import sys
from pathlib import Path

#: The checkout (or, in the image, /home/model-server): every path the tools default to starts here.
ROOT = Path(__file__).resolve().parent.parent


def tool(name: str) -> Path:
    """A TorchServe command (``torchserve``, ``torch-model-archiver``): the one installed beside this Python
    (the virtualenv), else the first on PATH (a GPU machine with TorchServe installed by ``pip --target``)."""
    beside = Path(sys.executable).with_name(name)
    found = beside if beside.exists() else shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} not found beside {sys.executable} nor on PATH: run `make venv` first")
    return Path(found)
