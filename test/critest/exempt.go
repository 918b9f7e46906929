package critest

// Engine is what runs boxlite's guest in this harness.
const Engine = "libkrun test double (the guest agent runs as a host process)"

// ByDesign are the specs runc passes that a micro-VM pod cannot honour: each
// is refused with the error given.
var ByDesign = []Exemption{}

// NeedsGuestKernel are the specs that fail under the libkrun test double only
// because its agent runs on this host's cgroups, not a guest kernel's.
var NeedsGuestKernel = []Exemption{}

// Exemptions are the lists that apply to engine.
func Exemptions(engine string) map[string][]Exemption {
	l := map[string][]Exemption{"by design": ByDesign}
	if engine == Engine {
		l["needs a real guest kernel"] = NeedsGuestKernel
	}
	return l
}
