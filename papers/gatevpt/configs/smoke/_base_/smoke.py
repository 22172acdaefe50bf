# SMOKE: GateVPT and its baselines on the tiny random-init ViT (MAE checkpoint layout, mean
# pooling; the same model as papers/lspt/configs/smoke) and scikit-learn's digits (32x32).
# Checks that `reproduce --paper gatevpt --mode smoke` runs end to end on a CPU in minutes;
# reproduces nothing (results go to smoke/gatevpt/, every row is labelled smoke).
_base_ = ['../../_base_/default.py']
smoke = True
protocol = 'digits-smoke'
backbone = dict(name='vit_micro_patch8_32.mae_test', checkpoint='')
method = dict(num_prompts=4, gate_init=1.0)
data = dict(benchmark='digits', task='digits', image_size=32, num_workers=0)
# lr 0.1 as the LSPT smoke configs on the same tiny model (the paper's lrs are for ViT-B/16)
optim = dict(optimizer='sgd', lr=0.1, lr_scaling='none', batch_size=100, epochs=12,
             warmup_epochs=1, weight_decay=0.0)
