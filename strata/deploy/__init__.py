"""Running the same configuration on a distributed system teams already operate.

`strata deploy ray` (`command`) puts engine replicas and gateway replicas on Ray Serve:
`plan` turns the settings into what runs where (no Ray), `autoscaling` is the policy Ray's
autoscaler calls (no Ray), `engine_server` and `announcer` are an engine replica's parts (no
Ray), and only `replicas` and `cluster` import Ray, so strata imports and runs without it.
"""
