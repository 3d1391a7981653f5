import os

# Retried steps wait 0.2 s instead of 5 s here (set before taxi_assets is imported; subprocesses
# the tests start inherit it).
os.environ.setdefault("TAXI_RETRY_DELAY_SECONDS", "0.2")
