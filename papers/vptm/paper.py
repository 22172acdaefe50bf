"""VPTM: what the harness knows about this paper (plain constants, read by replicate/papers.py
without executing this file; the names are documented there)."""
TITLE = ("VPTM: visual prompt learning as masked visual token modeling "
         "(Liao et al., arXiv 2303.04998)")
RECONSTRUCTION = True
STATUS_NOTE = (
    "The VPTM implementation is a RECONSTRUCTION: no public code exists and the paper body "
    "(method details, benchmarks, tables) is in none of the available sources "
    "(papers/vptm/README.md lists them). "
    "Its published.csv is empty by design; VPTM is compared with the same-backbone "
    "baselines measured here.")
UNAVAILABLE_REASON = (
    "the VPTM paper's result tables are in none of the available sources, so "
    "papers/vptm/published.csv has no "
    "rows; see papers/vptm/README.md")
OWN_METHODS = ("vptm",)
# the paper's hyper-parameters are unknown: every cell is searched on val
DEFAULT_MODE = "search"
MEASURED_BY = {
    "vptm": "VPTM's authors (protocol unknown: the paper body is in no available source)",
}
