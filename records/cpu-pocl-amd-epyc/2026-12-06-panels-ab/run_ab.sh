# old: the tree before B's panels (65009a1, a worktree at /work/wt-old); new: this commit.
# Two rounds, alternating, each process timing numpy beside; uptime before each.
for round in 1 2; do
  for tree in old new; do
    src=/work/main/src; [ $tree = old ] && src=/work/wt-old/src
    uptime >> load.txt
    PYTHONPATH=$src python3 ab_panels.py $tree-$round >> ab.jsonl
  done
done
