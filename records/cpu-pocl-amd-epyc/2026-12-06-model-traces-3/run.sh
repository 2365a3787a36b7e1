cd /work/main
for t in llama-7b-decode bert-base-train tinyllama-1.1b resnet50-im2col llama-7b-prefill; do
  r=3; case $t in resnet50-im2col|llama-7b-prefill) r=1;; esac
  s=$(date +%s); uptime >> /tmp/cputraces/load.txt
  python3 -m clgemm.cli bench --suite model --trace traces/models/$t.jsonl --peers numpy --repeats $r --quiet -o /tmp/cputraces/model-$t.json > /tmp/cputraces/$t.log 2>&1
  echo "$t rc=$? $(( $(date +%s) - s )) s" >> /tmp/cputraces/done.txt; uptime >> /tmp/cputraces/load.txt
done
