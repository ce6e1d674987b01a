"""`serving-exporter loadtest`: a stepped ramp of concurrent clients against one endpoint, its knee, and
the provisioned concurrency that follows from it.

- plan.py: the ramp, its caps and its stop rule (validated before anything is sent)
- target.py: where the requests go (a Databricks endpoint's invocations URL, or any URL) and their credentials
- generator.py: the load itself, with Locust used as a library, run in a child process (below)
- results.py: per-step figures, the knee and the recommendation (pure functions)
- report.py: text, JSON, CSV and the PNG chart

Locust patches the whole process with gevent when it is imported, and that patch has to come before
anything imports urllib3 (requests, the Databricks SDK): patched afterwards, creating an SSL context
recurses without end. The command's process has long imported those, and the exporter's own modules
must never be patched, so the generator runs as `python -m exporter.loadtest.generator` in a child
process that imports Locust first. Nothing else in the package imports Locust or matplotlib at module level.
"""
