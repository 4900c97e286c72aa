"""Test harness: a real etcd + kube-apiserver (like envtest) and Knative's binaries as peers.

controlplane.ControlPlane starts and breaks the control plane; peers starts event_display and
knative-mtping; `python -m tests.harness up|down` runs the same control plane in the
background. Nothing here is imported by mtping itself.
"""
