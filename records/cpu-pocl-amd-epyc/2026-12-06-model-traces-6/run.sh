# each trace through the CLI, numpy beside in the same process; uptime before and after each
cd "$(dirname "$0")"
for t in llama-7b-decode bert-base-train tinyllama-1.1b resnet50-im2col llama-7b-prefill; do
  r=3; case $t in resnet50-im2col|llama-7b-prefill) r=1;; esac
  uptime >> load.txt
  python3 -m clgemm.cli bench --suite model --trace ../../../traces/models/$t.jsonl --peers numpy --repeats $r --quiet -o model-$t.json > /dev/null 2>&1
  echo "$t rc=$?" >> load.txt; uptime >> load.txt
done
