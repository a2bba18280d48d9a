"""The launch driver's resident memory as cells finish, from measure.py's samples.csv: the largest sample
taken while at most K cells had finished, for each K (MiB).

    python docs/studies/cells2000/rss_at.py docs/studies/cells2000/runs/*/samples.csv
"""
import csv
import sys

MARKS = [25, 50, 100, 150, 190, 500, 1000, 1500, 1990]

for path in sys.argv[1:]:
    rows = [(int(cells), float(rss)) for _, cells, rss, _ in list(csv.reader(open(path)))[1:]]
    done = max(cells for cells, _ in rows)
    at = [f"{k}: {max(rss for cells, rss in rows if cells <= k):.0f}" for k in MARKS if k <= done]
    print(f"{path}\n    {', '.join(at)}")
