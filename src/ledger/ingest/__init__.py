"""Reading input files into validated facts: NDJSON, CSV and CloudEvents, plain or gzip, file or stdin."""
