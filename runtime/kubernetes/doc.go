// Package kubernetes is the engine that runs each hosted plugin as a pod of
// a Kubernetes cluster (runtime.Engine), through client-go's typed clients.
//
// # Address
//
// A runtime names the cluster and namespace as its engine:
//
//	kubernetes://NAMESPACE                      in-cluster service-account credentials
//	kubernetes://NAMESPACE/abs/path/kubeconfig  that kubeconfig (its current context)
//
// which reads beside a Docker or Podman engine's unix:///run/podman/podman.sock;
// then, optionally, its settings (Parse):
// ?carrier_image=IMAGE&carrier_mount=image_volume|init_container&host_addresses=IP,IP.
//
// # The connection: a carrier
//
// On Linux go-plugin's server listens only on a Unix socket, and a pod
// shares no directory with the host. The plugin container's PID 1 is
// therefore a carrier (./carrier, a static program in a FROM-scratch image,
// DefaultCarrierImage or the address's carrier_image, which the pod mounts
// as an image volume from Kubernetes 1.35 on, or an init container copies
// into an emptyDir before: carrier_mount, mount.go): it listens on
// CarrierPort before it starts the plugin as its child, passes the plugin's output through unchanged (the handshake
// line reaches the host in the pod's log, which this engine splits back
// into go-plugin's stdout and stderr), admits only the host's addresses and
// splices the first such connection that opens with TLS (go-plugin's
// session; the host's requests to the carrier are lines: tunnels, the
// container's figures) to the plugin's socket. The plugin takes
// the first connection as its only session, so a probe or another pod
// connecting first must never reach it; mTLS stays end to end. go-plugin's
// broker has the plugin dial sockets of the host's: after the session, the
// host opens a tunnel for each through the carrier (tunnel.go,
// carrier/tunnel.go), so that the pod makes no connection of its own.
//
// The host's addresses are its own interface addresses when each pod is
// made: a connection to a pod leaves from one of them unless something
// translates it on the way (then the address's host_addresses names what
// the pods see). When the host reaches a new pod from an address it did not have
// when the pod was made (a node's pod bridge comes with its first pod), the
// pod is made again, once.
//
// # Runtime fields
//
//   - oci_runtime: spec.runtimeClassName of the RuntimeClass whose handler
//     has that name; none for the nodes' default handler (DefaultHandler,
//     or WithDefaultHandler: the API does not say which it is). A runtime no
//     class names is refused with the classes the cluster has.
//   - cpu_nanos, memory_bytes: the containers' limits, and requests equal
//     to them (QoS Guaranteed); CPU rounded up to a millicore.
//   - rootless: runAsNonRoot, with user and group 65532.
//   - cgroup_parent: refused (ErrUnsupported within runtime.ErrStartRefused):
//     the kubelet owns the cgroups; a namespace's ResourceQuota bounds its
//     plugins together.
//   - network=false: a NetworkPolicy with no egress whose only ingress is
//     the host's addresses to the carrier's port, made with the pod and
//     deleted with it. Only a network plugin that enforces policies (Calico,
//     Cilium, ...) enforces it; the bridge plugin does not.
//   - The hardening: capabilities dropped (IPC_LOCK added for mlock), no
//     privilege escalation, a read-only root, seccomp RuntimeDefault. A
//     container's pids limit has no field in a pod (it is the kubelet's
//     podPidsLimit): it is not applied.
//   - The plugin's command must be registered: the carrier starts it, so the
//     image's entrypoint is not used.
//
// # Images
//
// The pod names Plugin.PullRef: image@image_digest when a manifest digest is
// registered, else image:tag; pull_policy never is imagePullPolicy Never,
// missing IfNotPresent. Vault's sha256 is an image ID (the config's digest),
// which a pod cannot name: once the plugin container ran, the kubelet's
// imageID must be that ID, or, where it tells only a manifest digest, the
// registered image_digest; else the start fails with
// runtime.ErrSHA256Mismatch and the pod is deleted. The kubelet pulls; the
// start waits for it up to the spec's pull limit (runtime.DefaultPullTimeout
// when unset), not the start's, and a registry's credentials (Spec.Auth)
// reach it as a dockerconfigjson Secret of the pod's name, made and deleted
// with the pod.
//
// # What the engine needs of the cluster
//
// In its namespace: pods create, get, list, watch, delete; pods/log get;
// events list (without it, a sandbox the node cannot make is told only by
// the start's limit, and a missing image some seconds later, by the
// container's status); networkpolicies create, delete; secrets create,
// delete, only for a registry's credentials. Cluster-wide, and
// not required: runtimeclasses (node.k8s.io) list, which a namespaced Role
// cannot grant; without it a pod names the class after its handler (runsc,
// kata, as clusters commonly name them), and Facts says it cannot tell. The
// plugin pods get no service-account token and no service links.
//
// Pods are listed for reaping by the managed-by and cluster-ID labels; the
// owner (pid:start, no label value) is an annotation, with every other
// runtime.Labels value that is not a valid label value.
package kubernetes
