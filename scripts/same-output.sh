#!/bin/bash
# A refactor must not change what is computed: run this script with the binary from
# before and from after the change, each into its own folder, then compare the two
# with scripts/same-output.py (every file byte for byte, timings and the seals over
# them aside). Four policies at N = 2, a curated run (verifier = oracle), an
# oracle-reference run, a 2 × 2 sweep with its report, verify and inspect tails, on a
# 6k-token subset of the prepared Shakespeare corpus (a few minutes on 2 cores).
#
#   scripts/same-output.sh OLD_BINARY /tmp/before
#   scripts/same-output.sh target/release/lmloop /tmp/after
#   python3 scripts/same-output.py /tmp/before /tmp/after
set -e
REPO=$(cd "$(dirname "$0")/.." && pwd)
B=$(realpath "$1"); D=$2
[ -f "$REPO/corpora/real/shakespeare/meta.json" ] || { echo "prepare the corpus first (make demo, or make corpora/real/shakespeare/meta.json)" >&2; exit 1; }
rm -rf $D; mkdir -p $D/corpora/real $D/configs; cd $D
ln -s "$REPO/corpora/real/shakespeare" corpora/real/shakespeare
REPO="$REPO" python3 - <<'PY'
import os
s=open(os.environ['REPO']+'/configs/default.toml').read()
s=s.replace('real_subset_tokens = 200000','real_subset_tokens = 6000').replace('epochs = 2','epochs = 1').replace('threads = 0','threads = 1').replace('device = "auto"','device = "cpu"')
open('configs/small.toml','w').write(s)
open('configs/curated.toml','w').write(s+'\n[curation]\nverifier = "oracle"\nkeep_fraction = 0.5\n')
open('configs/oracle.toml','w').write(s.replace('[generations]','[generations]\nreference = "oracle"'))
open('configs/sweep.toml','w').write('''name = "sm"
base = "small.toml"
generations = 2
seeds = [1, 2]
baseline = { policy = "replace" }
[[grid]]
policy = ["replace", "accumulate"]
''')
PY
for p in replace accumulate real; do $B generations --config configs/small.toml -n 2 --policy $p --seed 5 --run $p > log-$p.txt 2>&1; done
$B generations --config configs/small.toml -n 2 --policy mix --real-fraction 0.5 --seed 5 --run mix > log-mix.txt 2>&1
$B generations --config configs/curated.toml -n 2 --seed 5 --run curated > log-curated.txt 2>&1
$B generations --config configs/oracle.toml -n 2 --seed 5 --run oracle > log-oracle.txt 2>&1
$B sweep run configs/sweep.toml --jobs 1 > log-sweep.txt 2>&1
$B sweep report configs/sweep.toml > log-report.txt 2>&1
for r in replace mix curated; do $B verify --run $r >> log-verify.txt 2>&1; $B inspect tails --run $r >> log-tails.txt 2>&1 || true; done
echo done
