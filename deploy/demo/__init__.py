"""The upload page for people who are not engineers (``make demo``): ``index.html``, one static page that sends
a picked image to the inference API and shows the label, the top 3 and the Grad-CAM overlay, and ``page.py``, the
tiny server that serves it from its own origin (http://127.0.0.1:8090, the origin config.properties allows)."""
