"""The storage benchmark: upload, download and delete of random 1, 4, 10 and 16 MiB objects.

    LOADGEN_STORAGE_ENDPOINT=https://t3.storage.dev LOADGEN_STORAGE_BUCKET=my-bucket \
    LOADGEN_STORAGE_ACCESS_KEY_ID=... LOADGEN_STORAGE_SECRET_ACCESS_KEY=... \
    locust -f locustfiles/storage.py --headless -u 400 -r 400 --mode sequential --concurrency 16

Each user is one iteration: it uploads an object of random bytes unique to it, downloads
it whole and checks its size and SHA-256, then deletes it, each timed
(loadgen.providers.storage). Any S3-compatible endpoint works through boto3;
the endpoint and the bucket must be named, nothing has a default. The run is
an ordinary loadgen run (records, journal, sinks, exit codes), and `loadgen
leaderboard` ranks it in its storage table by the benchmark's score.
"""

from loadgen import SandboxUser


class StorageUser(SandboxUser):
    provider_name = "storage"
