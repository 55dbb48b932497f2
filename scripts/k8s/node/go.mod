module vault-plugin-runtime-catalog/k8s-node

go 1.25.0

require golang.org/x/sys v0.38.0
