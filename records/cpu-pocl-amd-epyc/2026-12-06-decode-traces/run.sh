# the two traces with decode products, after the small-rows lane's swap moved to the
# transposed epilogue; uptime before and after each
cd "$(dirname "$0")"
for t in llama-7b-decode tinyllama-1.1b; do
  uptime >> load.txt
  python3 -m clgemm.cli bench --suite model --trace ../../../traces/models/$t.jsonl --peers numpy --repeats 3 --quiet -o model-$t.json > /dev/null 2>&1
  echo "$t rc=$?" >> load.txt; uptime >> load.txt
done
