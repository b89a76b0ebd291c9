"""artserve deployment: the serving configuration (config.properties, model-config.yaml, metrics.yaml, read
as they are by `make serve` and by the Kubernetes ConfigMap), the archive, the local server, image, cluster."""

from pathlib import Path

#: The checkout (or, in the image, /home/model-server): every path the tools default to starts here.
ROOT = Path(__file__).resolve().parent.parent
