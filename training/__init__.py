"""artserve training: ImageFolder data, the training loop, evaluation of a checkpoint, export for serving."""

import os
from pathlib import Path

from deploy import ROOT

#: The default data set (an ImageFolder directory with train/ and val/): ``$ARTSERVE_DATA``, else ../shared/data/art5.
DATA_DIR = Path(os.environ.get("ARTSERVE_DATA", ROOT.parent / "shared" / "data" / "art5"))
