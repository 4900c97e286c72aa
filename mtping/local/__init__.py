"""Local mode: PingSources from YAML and JSON files instead of a cluster, same engine.

`loading` turns files into validated sources (or problems naming file and document),
`resolving` decides where their events go without a cluster, `watching` polls the files and
feeds the engine's registry. Nothing here imports `mtping.kube`, `mtping.app` or a Kubernetes
client: local mode must run where no cluster exists.
"""
