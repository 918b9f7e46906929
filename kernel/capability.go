package kernel

import (
	"fmt"
	"os"
)

// MethodKallsyms is the Method of an answer read from the image's kallsyms
// symbol table (a kernel without an embedded config, such as stock libkrunfw).
const MethodKallsyms = "kallsyms symbol table"

// A Capability is one guest-kernel feature the variants are compared on
// (kernel/parity_test.go) and operators are shown (`kernels`).
type Capability struct {
	// Name is the short name shown to operators, e.g. "pti".
	Name string
	// Group sorts capabilities for people: mitigations, hardening, memory,
	// filesystems, cgroups, paravirt, network, netfilter, devices.
	Group string
	// Options are the Kconfig options (CONFIG_...) that make the feature; an
	// embedded config says Yes when every one is y or m.
	Options []string
	// Symbols is the evidence in an image without a config: kallsyms names
	// that, in the Linux 6.12 sources, only these options build. Any one
	// present means Yes. Empty: the options leave no symbol of their own
	// (they change code or defaults inside shared functions), so such an
	// image says Unknown.
	Symbols []Symbol
}

// A Symbol is one kallsyms name. Global asks for a strong global symbol
// (kallsyms type T, D, R...; not weak W/V): the same name also exists as a
// local copy of a header's inline stub, or as a weak alias of sys_ni_syscall
// (COND_SYSCALL), when the option is off.
type Symbol struct {
	Name   string
	Global bool
}

func sym(name string) Symbol    { return Symbol{Name: name} }
func global(name string) Symbol { return Symbol{Name: name, Global: true} }

// capabilityCatalog lists the features of the stock libkrunfw kernel (lean)
// the project's net kernel must keep, plus the few that lean has and net
// leaves out on purpose (kernel/parity_test.go says why). Each symbol was
// checked against Linux 6.12 (the source file that defines it is built only
// with the option, or the option replaces it by an inline stub or a weak
// alias), found in the stock libkrunfw 6.12.91 image, and is cross-checked
// against the net kernel's embedded config by kernel/parity_test.go.
var capabilityCatalog = []Capability{
	// CPU vulnerability mitigations with code of their own. (The others only
	// set a default mode inside arch/x86/kernel/cpu/bugs.c and leave nothing
	// to see in an image; parity_test checks them in net's config.)
	{"pti", "mitigations", []string{"CONFIG_MITIGATION_PAGE_TABLE_ISOLATION"},
		[]Symbol{global("pti_init")}}, // arch/x86/mm/pti.c
	{"retpoline", "mitigations", []string{"CONFIG_MITIGATION_RETPOLINE"},
		[]Symbol{global("__x86_indirect_thunk_array")}}, // arch/x86/lib/retpoline.S
	{"rethunk", "mitigations", []string{"CONFIG_MITIGATION_RETHUNK"},
		[]Symbol{global("__x86_return_thunk")}}, // retpoline.S; else an inline stub
	{"unret-entry", "mitigations", []string{"CONFIG_MITIGATION_UNRET_ENTRY"},
		[]Symbol{sym("retbleed_untrain_ret")}},
	{"call-depth-tracking", "mitigations", []string{"CONFIG_MITIGATION_CALL_DEPTH_TRACKING"},
		[]Symbol{global("__x86_indirect_call_thunk_array")}},
	{"srso", "mitigations", []string{"CONFIG_MITIGATION_SRSO"},
		[]Symbol{global("srso_return_thunk")}},
	{"its", "mitigations", []string{"CONFIG_MITIGATION_ITS"},
		[]Symbol{global("its_return_thunk")}},

	// Memory-safety hardening and the LSM/audit hooks.
	{"vmap-stack", "hardening", []string{"CONFIG_VMAP_STACK"},
		[]Symbol{global("handle_stack_overflow")}}, // arch/x86/kernel/traps.c, #ifdef CONFIG_VMAP_STACK
	{"hardened-usercopy", "hardening", []string{"CONFIG_HARDENED_USERCOPY"},
		[]Symbol{global("__check_object_size")}}, // mm/usercopy.c
	{"slab-freelist-hardened", "hardening", []string{"CONFIG_SLAB_FREELIST_HARDENED"},
		nil}, // inline pointer mangling in mm/slub.c: no symbol
	{"list-hardened", "hardening", []string{"CONFIG_LIST_HARDENED"},
		[]Symbol{global("__list_add_valid_or_report")}}, // lib/list_debug.c
	{"fortify-source", "hardening", []string{"CONFIG_FORTIFY_SOURCE"},
		[]Symbol{global("__fortify_report")}}, // lib/string_helpers.c, #ifdef CONFIG_FORTIFY_SOURCE
	{"lsm", "hardening", []string{"CONFIG_SECURITY"},
		[]Symbol{global("security_add_hooks")}}, // security/security.c
	{"securityfs", "hardening", []string{"CONFIG_SECURITYFS"},
		[]Symbol{global("securityfs_create_file")}}, // security/inode.c
	{"lsm-network", "hardening", []string{"CONFIG_SECURITY_NETWORK"},
		[]Symbol{global("security_socket_create")}}, // else an inline stub
	{"audit", "hardening", []string{"CONFIG_AUDIT"},
		[]Symbol{global("audit_log_start")}}, // kernel/audit.c
	{"audit-syscall", "hardening", []string{"CONFIG_AUDITSYSCALL"},
		[]Symbol{global("__audit_syscall_entry")}}, // kernel/auditsc.c

	// Memory management.
	{"thp", "memory", []string{"CONFIG_TRANSPARENT_HUGEPAGE"},
		[]Symbol{global("do_huge_pmd_anonymous_page")}}, // mm/huge_memory.c
	{"compaction", "memory", []string{"CONFIG_COMPACTION"},
		[]Symbol{global("kcompactd_run")}}, // mm/compaction.c
	{"userfaultfd", "memory", []string{"CONFIG_USERFAULTFD"},
		[]Symbol{global("__x64_sys_userfaultfd")}}, // else a weak alias (COND_SYSCALL)
	{"cross-memory-attach", "memory", []string{"CONFIG_CROSS_MEMORY_ATTACH"},
		[]Symbol{global("__x64_sys_process_vm_readv")}}, // else a weak alias

	// File systems and process files.
	{"dax", "filesystems", []string{"CONFIG_DAX"},
		[]Symbol{global("alloc_dax")}}, // drivers/dax/super.c; else an inline stub
	{"fs-dax", "filesystems", []string{"CONFIG_FS_DAX"},
		[]Symbol{global("dax_iomap_rw")}}, // fs/dax.c
	{"fuse-dax", "filesystems", []string{"CONFIG_FUSE_DAX"},
		[]Symbol{global("fuse_dax_conn_alloc")}}, // fs/fuse/dax.c
	{"hugetlbfs", "filesystems", []string{"CONFIG_HUGETLBFS"},
		[]Symbol{sym("hugetlbfs_fill_super")}}, // fs/hugetlbfs/inode.c
	{"binfmt-misc", "filesystems", []string{"CONFIG_BINFMT_MISC"},
		[]Symbol{sym("load_misc_binary")}}, // fs/binfmt_misc.c
	{"fanotify", "filesystems", []string{"CONFIG_FANOTIFY"},
		[]Symbol{global("__x64_sys_fanotify_init")}}, // else a weak alias
	{"proc-children", "filesystems", []string{"CONFIG_PROC_CHILDREN"},
		[]Symbol{sym("children_seq_open")}}, // fs/proc/array.c, #ifdef CONFIG_PROC_CHILDREN
	{"virtio-fs", "filesystems", []string{"CONFIG_VIRTIO_FS"},
		[]Symbol{sym("virtio_fs_probe")}}, // fs/fuse/virtio_fs.c

	// cgroup v2 controllers (each controller's css_alloc is its own file's).
	{"cgroup-memory", "cgroups", []string{"CONFIG_MEMCG"},
		[]Symbol{sym("mem_cgroup_css_alloc")}},
	{"cgroup-cpu", "cgroups", []string{"CONFIG_CGROUP_SCHED"},
		[]Symbol{sym("cpu_cgroup_css_alloc")}},
	{"cgroup-io", "cgroups", []string{"CONFIG_BLK_CGROUP"},
		[]Symbol{sym("blkcg_css_alloc")}},
	{"cgroup-cpuset", "cgroups", []string{"CONFIG_CPUSETS"},
		[]Symbol{sym("cpuset_css_alloc")}},
	{"cgroup-pids", "cgroups", []string{"CONFIG_CGROUP_PIDS"},
		[]Symbol{sym("pids_css_alloc")}},
	{"cgroup-hugetlb", "cgroups", []string{"CONFIG_CGROUP_HUGETLB"},
		[]Symbol{sym("hugetlb_cgroup_css_alloc")}},
	{"cgroup-perf-event", "cgroups", []string{"CONFIG_CGROUP_PERF"},
		[]Symbol{sym("perf_cgroup_css_alloc")}},

	// Paravirtual guest.
	{"haltpoll-cpuidle", "paravirt", []string{"CONFIG_HALTPOLL_CPUIDLE"},
		[]Symbol{sym("haltpoll_cpu_online")}}, // drivers/cpuidle/cpuidle-haltpoll.c
	{"pv-spinlocks", "paravirt", []string{"CONFIG_PARAVIRT_SPINLOCKS"},
		[]Symbol{global("__pv_queued_spin_lock_slowpath")}}, // kernel/locking/qspinlock.c
	{"jump-label", "paravirt", []string{"CONFIG_JUMP_LABEL"},
		[]Symbol{global("jump_label_init")}}, // kernel/jump_label.c

	// Networking.
	{"ip-multicast", "network", []string{"CONFIG_IP_MULTICAST"},
		[]Symbol{global("igmp_rcv")}}, // net/ipv4/igmp.c, #ifdef CONFIG_IP_MULTICAST
	{"rps", "network", []string{"CONFIG_RPS"},
		[]Symbol{sym("store_rps_map")}}, // net/core/net-sysfs.c, #ifdef CONFIG_RPS
	{"dummy", "network", []string{"CONFIG_DUMMY"},
		[]Symbol{sym("dummy_setup")}}, // drivers/net/dummy.c
	{"veth", "network", []string{"CONFIG_VETH"},
		[]Symbol{sym("veth_xmit")}}, // drivers/net/veth.c
	{"net-ns", "network", []string{"CONFIG_NET_NS"},
		[]Symbol{global("copy_net_ns")}}, // else an inline stub
	{"vsock", "network", []string{"CONFIG_VIRTIO_VSOCKETS"},
		[]Symbol{sym("virtio_vsock_probe")}}, // net/vmw_vsock/virtio_transport.c

	// Netfilter that lean has (net adds xtables on top; see Features).
	{"nf-tables", "netfilter", []string{"CONFIG_NF_TABLES"},
		[]Symbol{global("nft_do_chain")}},
	{"bridge", "netfilter", []string{"CONFIG_BRIDGE"},
		[]Symbol{sym("br_handle_frame")}},
	{"bridge-igmp-snooping", "netfilter", []string{"CONFIG_BRIDGE_IGMP_SNOOPING"},
		[]Symbol{global("br_multicast_rcv")}},
	{"nf-tables-bridge", "netfilter", []string{"CONFIG_NF_TABLES_BRIDGE"},
		[]Symbol{sym("nft_do_chain_bridge")}},
	{"nf-conntrack-bridge", "netfilter", []string{"CONFIG_NF_CONNTRACK_BRIDGE"},
		[]Symbol{sym("nf_ct_bridge_pre")}},
	{"nf-conntrack-netlink", "netfilter", []string{"CONFIG_NF_CT_NETLINK"},
		[]Symbol{sym("ctnetlink_new_conntrack")}},
	{"nf-conntrack-sctp", "netfilter", []string{"CONFIG_NF_CT_PROTO_SCTP"},
		[]Symbol{global("nf_conntrack_sctp_packet")}},
	{"nf-conntrack-udplite", "netfilter", []string{"CONFIG_NF_CT_PROTO_UDPLITE"},
		[]Symbol{global("nf_conntrack_udplite_packet")}},
	{"nf-log-syslog", "netfilter", []string{"CONFIG_NF_LOG_SYSLOG"},
		[]Symbol{sym("nf_log_ip_packet")}},
	{"nfnetlink-log", "netfilter", []string{"CONFIG_NETFILTER_NETLINK_LOG"},
		[]Symbol{sym("nfulnl_log_packet")}},
	{"nft-log", "netfilter", []string{"CONFIG_NFT_LOG"},
		[]Symbol{sym("nft_log_eval")}},
	{"nft-limit", "netfilter", []string{"CONFIG_NFT_LIMIT"},
		[]Symbol{sym("nft_limit_pkts_eval")}},
	{"nft-fib-ipv4", "netfilter", []string{"CONFIG_NFT_FIB_IPV4"},
		[]Symbol{global("nft_fib4_eval")}},
	{"nft-fib-ipv6", "netfilter", []string{"CONFIG_NFT_FIB_IPV6"},
		[]Symbol{global("nft_fib6_eval")}},
	{"nft-fib-inet", "netfilter", []string{"CONFIG_NFT_FIB_INET"},
		[]Symbol{sym("nft_fib_inet_eval")}},

	// Lean's devices and patches that net leaves out (parity_test says why).
	{"tsi", "devices", []string{"CONFIG_TSI"},
		[]Symbol{sym("tsi_bind")}}, // libkrunfw's net/tsi/af_tsi.c
	{"virtio-gpu", "devices", []string{"CONFIG_DRM_VIRTIO_GPU"},
		[]Symbol{global("virtio_gpu_init")}},
	{"virtio-snd", "devices", []string{"CONFIG_SND_VIRTIO"},
		[]Symbol{sym("virtsnd_probe")}},
	{"selinux", "devices", []string{"CONFIG_SECURITY_SELINUX"},
		[]Symbol{sym("selinux_init")}},
	{"kvm-host", "devices", []string{"CONFIG_KVM"},
		[]Symbol{sym("kvm_init")}},
}

// CapabilityCatalog returns the capabilities kernels are compared on, in a
// stable order.
func CapabilityCatalog() []Capability {
	return append([]Capability(nil), capabilityCatalog...)
}

// HardeningNames are the capabilities that sum up a kernel's hardening for
// operators (the `kernels` command's hardening table), in display order.
func HardeningNames() []string {
	return []string{"pti", "retpoline", "vmap-stack", "hardened-usercopy", "fortify-source",
		"slab-freelist-hardened", "lsm"}
}

// Capabilities is what one kernel library says about each Capability.
type Capabilities struct {
	Version string // kernel release from the banner, "" if not found
	Method  string // MethodIKConfig, MethodKallsyms or MethodUnknown
	states  map[string]Tristate
}

// State is the answer for the named capability (Unknown for a name the
// catalog does not hold).
func (c Capabilities) State(name string) Tristate {
	return c.states[name]
}

// InspectCapabilities reads a libkrunfw-ABI library (or a raw kernel image)
// and answers every catalog capability. An embedded config (IKCONFIG) is the
// authority where there is one; otherwise the kallsyms table is decoded and
// each capability's symbols looked up: a present symbol means Yes, an absent
// one No only for a kernel release whose sources were checked (6.12, as for
// Inspect's string markers), else Unknown. Capabilities without symbols, and
// every capability of an image with neither source, are Unknown.
//
// Errors are returned only for I/O failures.
func InspectCapabilities(path string) (Capabilities, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Capabilities{}, fmt.Errorf("inspect kernel capabilities: %w", err)
	}
	return inspectCapabilities(data), nil
}

func inspectCapabilities(data []byte) Capabilities {
	version := bannerVersion(data)
	if cfg, ok := findIKConfig(data); ok {
		return capabilitiesFromConfig(cfg, version)
	}
	if syms, ok := readKallsyms(data); ok {
		return capabilitiesFromSymbols(syms, version)
	}
	return Capabilities{Version: version, Method: MethodUnknown, states: map[string]Tristate{}}
}

func capabilitiesFromConfig(cfg map[string]string, version string) Capabilities {
	c := Capabilities{Version: version, Method: MethodIKConfig, states: map[string]Tristate{}}
	for _, capa := range capabilityCatalog {
		state := Yes
		for _, opt := range capa.Options {
			if configTristate(cfg, opt) != Yes {
				state = No
			}
		}
		c.states[capa.Name] = state
	}
	return c
}

func capabilitiesFromSymbols(syms symbols, version string) Capabilities {
	c := Capabilities{Version: version, Method: MethodKallsyms, states: map[string]Tristate{}}
	absentMeansNo := version != "" && markersVerifiedFor(version)
	for _, capa := range capabilityCatalog {
		state := Unknown
		if len(capa.Symbols) > 0 && absentMeansNo {
			state = No
		}
		for _, s := range capa.Symbols {
			if syms.has(s.Name, s.Global) {
				state = Yes
			}
		}
		c.states[capa.Name] = state
	}
	return c
}
