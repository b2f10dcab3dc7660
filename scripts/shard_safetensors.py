#!/usr/bin/env python3
"""Splits a safetensors file into N shards plus model.safetensors.index.json (same tensors,
same bytes, in file order), without the safetensors package: for benchmarks of sharded
models (BENCHMARKS.md, "Huge pages handed back whole").

    python3 scripts/shard_safetensors.py SRC.safetensors OUT_DIR N
"""
import json, struct, sys, os
src, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
os.makedirs(out, exist_ok=True)
f = open(src, 'rb'); hl = struct.unpack('<Q', f.read(8))[0]; h = json.loads(f.read(hl)); base = 8 + hl
meta = h.pop('__metadata__', None)
names = sorted(h, key=lambda k: h[k]['data_offsets'][0])
per = (len(names) + n - 1) // n
wm = {}
for i in range(n):
    part = names[i*per:(i+1)*per]
    if not part: break
    fn = f"model-{i+1:05d}-of-{n:05d}.safetensors"
    hdr = {}; off = 0; blobs = []
    for k in part:
        s, e = h[k]['data_offsets']; f.seek(base + s); b = f.read(e - s)
        hdr[k] = {'dtype': h[k]['dtype'], 'shape': h[k]['shape'], 'data_offsets': [off, off + len(b)]}
        off += len(b); blobs.append(b); wm[k] = fn
    hj = json.dumps(hdr, separators=(',', ':')).encode(); hj += b' ' * ((8 - len(hj) % 8) % 8)
    with open(os.path.join(out, fn), 'wb') as g:
        g.write(struct.pack('<Q', len(hj))); g.write(hj)
        for b in blobs: g.write(b)
json.dump({'metadata': {}, 'weight_map': wm}, open(os.path.join(out, 'model.safetensors.index.json'), 'w'))
