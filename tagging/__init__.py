"""artserve tagging: the curators' tools, clients of a running server (collection tagging with a review
report, evaluation of a server on a labelled folder) and the endpoint client they share."""
