"""`civicpulse import`: council exports (CSV, Excel) into intake or feedback, by mapping.

- mapping.py: the YAML mapping (columns, value maps, time zone, keys) and its checks
- readers.py: CSV and .xlsx rows, streamed
- transform.py: a row -> a raw record or contact route; intake's rules for dry runs
- senders.py: intake over HTTP, the raw topic, feedback's contact routes
- report.py: the rejection report (CSV)
- run.py: the loop, with its progress bar; command.py: the sub-command's wiring
"""
