"""GateVPT: what the harness knows about this paper (plain constants, read by replicate/papers.py
without executing this file; the names are documented there)."""
TITLE = "GateVPT / Gated Prompt Tuning (Yoo et al., ICML 2023, arXiv 2306.05067)"
RECONSTRUCTION = False
STATUS_NOTE = ("Published values transcribed from the paper's Tables 1-4 and 7 "
               "(papers/gatevpt/published.csv).")
OWN_METHODS = ("gatevpt",)
# the paper's own hyper-parameters (Table 5) are known: each cell runs pinned
DEFAULT_MODE = "pinned"
MEASURED_BY = {
    "gatevpt": "GateVPT's authors, GateVPT's protocol (App. A.2, official run.sh)",
    "vpt": "VPT (Jia et al., ECCV 2022), VPT's protocol (KMnP/vpt tune_*.py); copied with a "
           "dagger",
}
