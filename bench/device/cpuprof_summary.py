#!/usr/bin/env python3
"""Summarises a V8 .cpuprofile (node --cpu-prof): of the samples whose stack holds a frame named FRAME (default
Layer.apply), the share of each function, inclusive and self, and the samples' count; the raw profile is large, the
summary is a few KB. Usage: cpuprof_summary.py PROFILE [FRAME] [TOP]"""
import collections
import json
import sys

path = sys.argv[1]
frame = sys.argv[2] if len(sys.argv) > 2 else 'Layer.apply'
top = int(sys.argv[3]) if len(sys.argv) > 3 else 45
p = json.load(open(path))
nodes = {n['id']: n for n in p['nodes']}
parent = {}
for n in p['nodes']:
    for c in n.get('children', []):
        parent[c] = n['id']


def key(nid):
    cf = nodes[nid]['callFrame']
    return f"{cf['functionName'] or '(anon)'} {cf['url'].split('/')[-1]}:{cf['lineNumber']}"


incl, own = collections.Counter(), collections.Counter()
total = 0
interval = (p['endTime'] - p['startTime']) / max(1, len(p['samples']))
for nid in p['samples']:
    chain, x = [], nid
    while x is not None:
        chain.append(x)
        x = parent.get(x)
    names = [nodes[c]['callFrame']['functionName'] for c in chain]
    if frame not in names:
        continue
    total += 1
    own[key(nid)] += 1
    for k in {key(c) for c in chain}:
        incl[k] += 1
print(f'{total} samples under {frame} (about {interval:.0f} us each)')
print('--- inclusive')
for k, v in incl.most_common(top):
    print(f'{100 * v / max(1, total):5.1f}% {k}')
print('--- self')
for k, v in own.most_common(top // 2):
    print(f'{100 * v / max(1, total):5.1f}% {k}')
