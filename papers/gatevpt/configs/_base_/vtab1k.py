_base_ = ['default.py']
protocol = 'vtab1k-gatevpt'
data = dict(benchmark='vtab1k', root='${DATA_ROOT}', format='auto', image_size=224,
            num_workers=4, in_memory=False, transform='vpt-vtab')
# every split is decoded once into the image cache (docs/data.md) at source resolution;
# train800/val200/train800val200 (1,000 images) are resized once per run, the test split (up to
# 73,728 images) is resized per batch on the training device (bit-identical to the CPU TF1 resize)
optim = dict(batch_size=128)  # Table 5: 128 except MoCo v3 Pets / RESISC45 (64)
