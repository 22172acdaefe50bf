"""LSPT: what the harness knows about this paper (plain constants, read by replicate/papers.py
without executing this file; the names are documented there)."""
TITLE = "LSPT: Long-term Spatial Prompt Tuning (Mo et al., arXiv 2402.17406)"
RECONSTRUCTION = True
STATUS_NOTE = (
    "The LSPT implementation is a RECONSTRUCTION: no public code exists and the paper's "
    "method section, implementation details and tables are in none of the available "
    "sources (papers/lspt/README.md lists them, what is sourced and what is "
    "reconstructed). Its "
    "published.csv holds only the baseline rows LSPT's Tables 1-2 share with GateVPT.")
UNAVAILABLE_REASON = (
    "no LSPT number is known (the paper's tables are in none of the available sources), so "
    "there is nothing to compare with; see papers/lspt/README.md")
OWN_METHODS = ("lspt",)
# pinned cells reuse GateVPT's Table 5 hyper-parameters (papers/lspt/README.md)
DEFAULT_MODE = "pinned"
# LSPT extends GateVPT: the report puts LSPT's numbers beside GateVPT's reproduced and
# published ones on the same cells
BUILDS_ON = "gatevpt"
BASELINE_METHOD = "gatevpt"
MEASURED_BY = {
    "lspt": "LSPT's authors (protocol unknown: the paper body is in no available source)",
}
