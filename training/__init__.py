"""artserve training: ImageFolder data, the training loop, evaluation of a checkpoint, export for serving."""

import argparse
import os
from collections.abc import Callable
from pathlib import Path

from deploy import ROOT

#: The default data set (an ImageFolder directory with train/ and val/): ``$ARTSERVE_DATA``, else ../shared/data/art5.
DATA_DIR = Path(os.environ.get("ARTSERVE_DATA", ROOT.parent / "shared" / "data" / "art5"))


def exit_on_bad_input(run: Callable[[argparse.Namespace], object]) -> Callable[[argparse.Namespace], None]:
    """A command's ``main(args)`` around ``run(args)``: a ValueError or FileNotFoundError (bad data, a missing
    file) ends the command with its message instead of a traceback. Used by training.evaluate and tagging."""

    def main(args: argparse.Namespace) -> None:
        try:
            run(args)
        except (ValueError, FileNotFoundError) as e:
            raise SystemExit(f"error: {e}") from None

    return main
