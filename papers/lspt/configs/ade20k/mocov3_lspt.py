# LSPT on ADE20K (SETR-PUP, ViT-B/16): a RECONSTRUCTION.  Segmentation appears only in an AI
# summary of the LSPT paper (papers/lspt/README.md, source S5); no LSPT ADE20K table
# or number is known.  Inherits GateVPT's ADE20K setup (its Table 3 row, Table 5 settings) and
# holds only LSPT's delta (variant A defaults, see papers/lspt/README.md).
_base_ = ['../../../gatevpt/configs/ade20k/mocov3_gatevpt.py']

paper = 'lspt'
name = 'lspt-ade20k-mocov3_vitb16-lspt'
model = dict(backbone=dict(method=dict(type='lspt')))
# the inherited cell names GateVPT's Table 3; LSPT has no known ADE20K table, so the record
# must not point there (the comparison reads the table from published.csv, not from here)
cell = dict(table='unavailable (no LSPT ADE20K table is known)', backbone='mocov3_vitb16',
            method='lspt')
assumed = {
    'model.backbone.method': 'LSPT variant A defaults (lstm_hidden = D), every option assumed '
                             '(papers/lspt/README.md); that LSPT reports segmentation at all is '
                             'known only from an AI summary (source S5), unverified',
}
