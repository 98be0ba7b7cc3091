"""The host agent: runs training jobs or serves models on one GPU host. Knows nothing of cdktf."""
