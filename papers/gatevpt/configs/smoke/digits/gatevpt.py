_base_ = ['../_base_/smoke.py']
name = 'gatevpt-smoke-digits-gatevpt'
cell = dict(table='smoke', backbone='micro_mae_test', method='gatevpt', benchmark='digits', group='', task='digits', metric='top1')
