_base_ = ['../_base_/smoke.py']
name = 'gatevpt-smoke-digits-vpt_deep'
# VPT baseline: prompts and head only (no gates, no temperatures)
method = dict(_delete_=True, type='vpt_deep', num_prompts=4, prompt_dropout=0.1, pool='auto', head_init='vpt')
assumed = dict(_delete_=True)
cell = dict(table='smoke', backbone='micro_mae_test', method='vpt_deep', benchmark='digits', group='', task='digits', metric='top1')
