"""Compares two folders written by scripts/same-output.sh: every file that differs
must differ only in timings (and the seals computed over them). Exit 1 otherwise."""
import json, csv, sys, os, re
B, A = sys.argv[1], sys.argv[2]
bad=[]
def strip_json(o):
    if isinstance(o, dict):
        return {k: strip_json(v) for k,v in o.items() if not re.search(r'second|time|started|finished|elapsed|date|pid|host|content_sha256', k)}
    if isinstance(o, list): return [strip_json(x) for x in o]
    return o
def csv_rows(p, drop):
    r=list(csv.reader(open(p)))
    h=r[0]; keep=[i for i,c in enumerate(h) if not drop(c)]
    return [[row[i] for i in keep if i < len(row)] for row in r]
for line in os.popen(f"diff -rq {B} {A} | grep -v '^Only in'").read().splitlines():
    m=re.match(r"Files (.*) and (.*) differ", line)
    pb, pa = m.group(1), m.group(2)
    rel=os.path.relpath(pb, B)
    base=os.path.basename(rel)
    if base.endswith('.json'):
        try:
            jb, ja = json.load(open(pb)), json.load(open(pa))
        except Exception as e:
            bad.append((rel,'unreadable')); continue
        if strip_json(jb)!=strip_json(ja): bad.append((rel,'json'))
    elif base=='generations.csv':
        d=lambda c: 'seconds' in c
        if csv_rows(pb,d)!=csv_rows(pa,d): bad.append((rel,'csv'))
    elif base=='train_log.csv':
        d=lambda c: 'per_second' in c or c in ('tokens_per_s','tok_s')
        rb, ra = csv_rows(pb,d), csv_rows(pa,d)
        if rb!=ra:
            # drop last numeric throughput column if header unknown
            hb=rb[0]
            bad.append((rel,'trainlog '+','.join(hb)))
    elif base.endswith('.lock') or base.startswith('log-') or base.endswith('.log'):
        continue
    else:
        bad.append((rel,'other'))
only=os.popen(f"diff -rq {B} {A} | grep '^Only in'").read().splitlines()
for b in bad[:30]: print(*b)
for o in only[:10]: print(o)
print(len(bad), 'files differ beyond timings;', len(only), 'files only on one side')
sys.exit(1 if bad or only else 0)
