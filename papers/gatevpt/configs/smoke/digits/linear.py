_base_ = ['../_base_/smoke.py']
name = 'gatevpt-smoke-digits-linear'
# linear probe: the head on the frozen backbone's pooled features
method = dict(_delete_=True, type='linear', pool='auto', head_init='vpt')
assumed = dict(_delete_=True)
cell = dict(table='smoke', backbone='micro_mae_test', method='linear', benchmark='digits', group='', task='digits', metric='top1')
