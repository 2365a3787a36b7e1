# old: the tree before B's panels (65009a1, a worktree at /work/wt-old); new: this commit.
# Two rounds, alternating; uptime before each.
for round in 1 2; do for tree in old new; do
  src=/work/main/src; [ $tree = old ] && src=/work/wt-old/src
  uptime >> load.txt
  PYTHONPATH=$src python3 ab_transposed.py $tree-$round >> ab.txt 2>/dev/null
  PYTHONPATH=$src python3 ab_batched.py $tree-$round >> ab.txt 2>/dev/null
done; done
