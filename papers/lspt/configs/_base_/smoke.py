# LSPT is a RECONSTRUCTION (paper body unread): see ./lspt.py and papers/lspt/README.md
# SMOKE: the tiny random-init ViT (MAE checkpoint layout, mean pooling) on
# scikit-learn's digits (32x32).  Checks that the pipeline runs; reproduces nothing.
_base_ = ['./lspt.py']
smoke = True
paper = 'lspt'
protocol = 'digits-smoke'
backbone = dict(name='vit_micro_patch8_32.mae_test', checkpoint='')
method = dict(_base_._lspt_.method, num_prompts=4, gate_init=1.0)
data = dict(benchmark='digits', task='digits', image_size=32, num_workers=0)
optim = dict(optimizer='sgd', lr=0.1, lr_scaling='none', batch_size=100, epochs=12,
             warmup_epochs=1, weight_decay=0.0)
