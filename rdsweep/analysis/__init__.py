"""Analysis: finished results to a table (collect), and the table to answers and pictures: frontiers and
regimes, learning curves, model selection, paired comparisons, image grids. No Ray, no training."""
