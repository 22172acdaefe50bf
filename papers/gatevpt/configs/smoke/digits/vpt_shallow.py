_base_ = ['../_base_/smoke.py']
name = 'gatevpt-smoke-digits-vpt_shallow'
# VPT baseline: prompts and head only (no gates, no temperatures)
method = dict(_delete_=True, type='vpt_shallow', num_prompts=4, prompt_dropout=0.1, pool='auto', head_init='vpt')
assumed = dict(_delete_=True)
cell = dict(table='smoke', backbone='micro_mae_test', method='vpt_shallow', benchmark='digits', group='', task='digits', metric='top1')
