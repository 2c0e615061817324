"""The index layer: which samples exist, in one compact form every source shares.

A source (xloader/sources/) is a layout parser: it lists folders (`_walk.list_image_files`,
with its C fast path `_fastlist.c`) or reads a table (`_table.read_table`), and fills one
`SampleIndex` (`_sample_index`: NumPy columns, string tables, ragged groups). What acts on
samples without knowing the layout acts on that index, here, once: `Subset` and the seeded
`split` (`subset.py`), and the validation split `ImageFolder` shares with them.
Nothing here imports `xloader.sources`: the layer below the parsers.
"""
