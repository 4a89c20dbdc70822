"""The APIC class catalogue: RN formats, parents, configurable properties, defaults and value rules.

One table serves both sides of the wire: the diff-sync uses it to compute DNs and to normalise values before
comparing (the APIC stores port 80 as ``http`` and protocol 6 as ``tcp``), and the simulator uses it to
validate writes with the APIC's own error codes. Values follow the model metadata summarised in
docs/apic-rest-facts.md section 4; the first value of an enum is its default.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

PropKind = Literal["str", "enum", "flags", "port", "proto"]

PORT_NAMES: Mapping[int, str] = {
    0: "unspecified",
    20: "ftpData",
    25: "smtp",
    53: "dns",
    80: "http",
    110: "pop3",
    443: "https",
    554: "rtsp",
}
PROTOCOL_NAMES: Mapping[int, str] = {
    0: "unspecified",
    1: "icmp",
    2: "igmp",
    6: "tcp",
    8: "egp",
    9: "igp",
    17: "udp",
    58: "icmpv6",
    88: "eigrp",
    89: "ospfigp",
    103: "pim",
    115: "l2tp",
}
_PORT_NUMBERS = {name: num for num, name in PORT_NAMES.items()}
_PROTOCOL_NUMBERS = {name: num for num, name in PROTOCOL_NAMES.items()}


class BadValue(ValueError):
    """A value outside an enumeration (the APIC answers code 120)."""


class FailedValidation(ValueError):
    """A value that breaks a length or character rule (the APIC answers code 801)."""


@dataclass(frozen=True)
class Prop:
    """One configurable property and the rule its values follow."""

    kind: PropKind = "str"
    values: tuple[str, ...] = ()
    numbers: Mapping[str, int] = field(default_factory=dict)
    min_len: int = 0
    max_len: int = 128
    pattern: str | None = None
    default: str | None = None

    @property
    def default_value(self) -> str:
        if self.default is not None:
            return self.default
        if self.kind == "enum":
            return self.values[0]
        if self.kind in ("port", "proto"):
            return "unspecified"
        return ""

    def canonical(self, value: str) -> str:
        """The form the APIC stores `value` in; raises BadValue or FailedValidation."""
        value = str(value)
        if self.kind == "enum":
            if value in self.values:
                return value
            by_number = {str(n): name for name, n in self._enum_numbers().items()}
            if value in by_number:
                return by_number[value]
            raise BadValue(value)
        if self.kind == "flags":
            return self._canonical_flags(value)
        if self.kind == "port":
            return _canonical_number(value, PORT_NAMES, _PORT_NUMBERS, 65535)
        if self.kind == "proto":
            return _canonical_number(value, PROTOCOL_NAMES, _PROTOCOL_NUMBERS, 255)
        if not self.min_len <= len(value) <= self.max_len:
            raise FailedValidation(value)
        if self.pattern is not None and value and not re.fullmatch(self.pattern, value):
            raise FailedValidation(value)
        return value

    def _enum_numbers(self) -> Mapping[str, int]:
        return self.numbers or {name: index for index, name in enumerate(self.values)}

    def _canonical_flags(self, value: str) -> str:
        # "unspecified", "none" and "0" all spell the empty set in what clients send (acitoolkit sends "0").
        parts = {
            p.strip() for p in value.split(",") if p.strip() and p.strip() not in ("unspecified", "none", "0")
        }
        unknown = parts - set(self.values)
        if unknown:
            raise BadValue(value)
        return ",".join(v for v in self.values if v in parts)


def _canonical_number(value: str, names: Mapping[int, str], numbers: Mapping[str, int], top: int) -> str:
    if value in numbers:
        return value
    if value.isdigit() and int(value) <= top:
        return names.get(int(value), str(int(value)))
    raise BadValue(value)


def enum(*values: str, numbers: Mapping[str, int] | None = None) -> Prop:
    return Prop(kind="enum", values=values, numbers=dict(numbers or {}))


def flags(*values: str) -> Prop:
    return Prop(kind="flags", values=values)


def text(
    min_len: int = 0, max_len: int = 128, pattern: str | None = None, default: str | None = None
) -> Prop:
    return Prop(kind="str", min_len=min_len, max_len=max_len, pattern=pattern, default=default)


PORT = Prop(kind="port")
PROTO = Prop(kind="proto")
YES_NO = enum("no", "yes")
NO_YES_DEFAULT_YES = Prop(kind="enum", values=("yes", "no"), numbers={"no": 0, "yes": 1})
PRIO = enum("unspecified", "level1", "level2", "level3", "level4", "level5", "level6")
MATCH_T = enum("AtleastOne", "All", "AtmostOne", "None")

TENANT_NAME = text(1, 63, r"[a-zA-Z0-9_.-]+")
AP_EPG_NAME = text(1, 64, r"[a-zA-Z0-9_.:-]+")
OBJECT_NAME = text(1, 64, r"[a-zA-Z0-9_.-]+")
RELATION_NAME = text(0, 64, r"[a-zA-Z0-9_.:-]*")

# Properties every configurable class here carries.
COMMON_PROPS: Mapping[str, Prop] = {
    "annotation": text(0, 128, r"[a-zA-Z0-9_.:-]*"),
    "descr": text(0, 128, r'[^\[\]"]*'),
    "nameAlias": text(0, 63, r"[a-zA-Z0-9_.-]*"),
    "ownerKey": text(0, 128, r'[^\[\]"]*'),
    "ownerTag": text(0, 128, r'[^\[\]"]*'),
}

# Properties the APIC computes; never written, never compared.
READ_ONLY_PROPS = frozenset(
    {
        "dn",
        "rn",
        "status",
        "childAction",
        "lcOwn",
        "modTs",
        "monPolDn",
        "uid",
        "extMngdBy",
        "configIssues",
        "configSt",
        "pcTag",
        "txId",
        "tDn",
        "tRn",
        "tCl",
        "tType",
        "state",
        "stateQual",
        "forceResolve",
        "rType",
        "tContextDn",
        "userdom",
    }
)


@dataclass(frozen=True)
class Relation:
    """A named relation: `name_prop` names a `target` object, found by `target_rn` in the tenant or common."""

    name_prop: str
    target: str
    target_rn: str


@dataclass(frozen=True)
class ClassMeta:
    """What the APIC model says about one class."""

    name: str
    rn: str
    parents: tuple[str, ...]
    props: Mapping[str, Prop]
    relation: Relation | None = None
    # Created by the APIC itself (uid "0"); we neither own nor compare them.
    system: bool = False

    @property
    def naming(self) -> tuple[str, ...]:
        return tuple(re.findall(r"\{(\w+)\}", self.rn))

    @property
    def rn_prefix(self) -> str:
        return self.rn.split("{", 1)[0]

    def rn_for(self, attributes: Mapping[str, str]) -> str:
        """The RN of an object of this class; raises KeyError naming the missing naming property."""
        rn = self.rn
        for prop in self.naming:
            if prop not in attributes or attributes[prop] == "":
                raise KeyError(prop)
            rn = rn.replace("{" + prop + "}", str(attributes[prop]))
        return rn

    def naming_from_rn(self, rn: str) -> dict[str, str] | None:
        """The naming properties encoded in `rn`, or None when `rn` is not of this class."""
        pattern = "".join(
            "(?P<" + part[1:-1] + ">.+)" if part.startswith("{") else re.escape(part)
            for part in re.split(r"(\{\w+\})", self.rn)
            if part
        )
        match = re.fullmatch(pattern, rn)
        return dict(match.groupdict()) if match else None


def _cls(
    name: str,
    rn: str,
    parents: tuple[str, ...],
    props: Mapping[str, Prop] | None = None,
    relation: Relation | None = None,
    system: bool = False,
) -> ClassMeta:
    merged = dict(COMMON_PROPS)
    merged.update(props or {})
    if relation is not None:
        merged.setdefault(relation.name_prop, RELATION_NAME)
    return ClassMeta(name, rn, parents, merged, relation, system)


_EPG_CHILD = ("fvAEPg",)
_BD_CHILD = ("fvBD",)
ANY_PARENT = "*"
ENABLED = enum("enabled", "disabled")
DISABLED = enum("disabled", "enabled")
IMMEDIACY = enum("lazy", "immediate", "pre-provision")
ENCAP = text(0, 64, r"[a-zA-Z0-9_.:-]*", default="unknown")
LABEL_TAG = enum(
    "yellow-green", "aqua", "aquamarine", "azure", "beige", "black", "blue", "blue-violet", "brown", "chartreuse",
    "chocolate", "coral", "crimson", "cyan", "gold", "green", "indigo", "lime", "magenta", "navy", "orange",
    "pink", "purple", "red", "salmon", "silver", "tan", "teal", "turquoise", "violet", "white", "yellow",
)


def _label(name: str, rn: str, parents: tuple[str, ...]) -> ClassMeta:
    return _cls(name, rn, parents, {"name": OBJECT_NAME, "isComplement": YES_NO, "tag": LABEL_TAG})


def _named_relation(name: str, rn: str, parents: tuple[str, ...], prop: str, target: str, target_rn: str,
                    props: Mapping[str, Prop] | None = None) -> ClassMeta:
    return _cls(name, rn, parents, props, relation=Relation(prop, target, target_rn))

CLASSES: Mapping[str, ClassMeta] = {
    m.name: m
    for m in [
        _cls("polUni", "uni", ()),
        _cls("fvTenant", "tn-{name}", ("polUni",), {"name": TENANT_NAME}),
        _cls("fvAp", "ap-{name}", ("fvTenant",), {"name": AP_EPG_NAME, "prio": PRIO}),
        _cls(
            "fvAEPg",
            "epg-{name}",
            ("fvAp",),
            {
                "name": AP_EPG_NAME,
                "pcEnfPref": enum("unenforced", "enforced", numbers={"enforced": 1, "unenforced": 2}),
                "prefGrMemb": enum("exclude", "include"),
                "floodOnEncap": enum("disabled", "enabled"),
                "fwdCtrl": flags("proxy-arp"),
                "matchT": MATCH_T,
                "isAttrBasedEPg": YES_NO,
                "shutdown": YES_NO,
                "prio": PRIO,
                "exceptionTag": text(0, 512),
                "hasMcastSource": YES_NO,
                "pcEnfPrefUpdated": YES_NO,
            },
        ),
        _named_relation(
            "fvRsAEPgMonPol", "rsAEPgMonPol", _EPG_CHILD, "tnMonEPGPolName", "monEPGPol", "monepg-{}"
        ),
        _cls(
            "fvRsDomAtt",
            "rsdomAtt-[{tDn}]",
            _EPG_CHILD,
            {
                "tDn": text(1, 512),
                "encap": ENCAP,
                "primaryEncap": ENCAP,
                "primaryEncapInner": ENCAP,
                "secondaryEncapInner": ENCAP,
                "encapMode": enum("auto", "vlan", "vxlan", "vxlan-hybrid"),
                "instrImedcy": IMMEDIACY,
                "resImedcy": IMMEDIACY,
                "classPref": enum("encap", "useg"),
                "switchingMode": enum("native", "AVE"),
                "bindingType": enum("none", "staticBinding", "dynamicBinding", "ephemeral"),
                "numPorts": text(0, 8, r"[0-9]*", default="0"),
                "portAllocation": enum("none", "elastic", "fixed"),
                "netflowPref": DISABLED,
                "netflowDir": enum("both", "ingress", "egress"),
                "epgCos": enum("Cos0", "Cos1", "Cos2", "Cos3", "Cos4", "Cos5", "Cos6", "Cos7"),
                "epgCosPref": DISABLED,
                "untagged": YES_NO,
                "delimiter": text(0, 1),
                "customEpgName": text(0, 80),
                "lagPolicyName": text(0, 512),
                "ipamDhcpOverride": text(0, 64, default="0.0.0.0"),
                "ipamEnabled": YES_NO,
                "ipamGateway": text(0, 64, default="0.0.0.0"),
            },
        ),
        _cls(
            "fvRsPathAtt",
            "rspathAtt-[{tDn}]",
            _EPG_CHILD,
            {
                "tDn": text(1, 512, r"topology/.+"),
                "encap": text(1, 64),
                "primaryEncap": ENCAP,
                "instrImedcy": IMMEDIACY,
                "mode": enum("regular", "native", "untagged"),
            },
        ),
        _cls("fvRsSecInherited", "rssecInherited-[{tDn}]", ("fvAEPg", "fvESg"), {"tDn": text(1, 512)}),
        _cls(
            "fvCrtrn",
            "crtrn",
            _EPG_CHILD,
            {"name": text(0, 64, r"[a-zA-Z0-9_.:-]*"), "match": enum("any", "all"), "prec": text(0, 10, default="0")},
        ),
        _label("vzConsLbl", "conslbl-{name}", ("fvAEPg", "vzAny")),
        _label("vzProvLbl", "provlbl-{name}", ("fvAEPg", "vzAny")),
        _cls("fvRsBd", "rsbd", _EPG_CHILD, relation=Relation("tnFvBDName", "fvBD", "BD-{}")),
        _cls(
            "fvRsProv",
            "rsprov-{tnVzBrCPName}",
            _EPG_CHILD,
            {"prio": PRIO, "matchT": MATCH_T},
            relation=Relation("tnVzBrCPName", "vzBrCP", "brc-{}"),
        ),
        _cls(
            "fvRsCons",
            "rscons-{tnVzBrCPName}",
            _EPG_CHILD,
            {"prio": PRIO},
            relation=Relation("tnVzBrCPName", "vzBrCP", "brc-{}"),
        ),
        _cls(
            "fvRsConsIf",
            "rsconsIf-{tnVzCPIfName}",
            _EPG_CHILD,
            {"prio": PRIO},
            relation=Relation("tnVzCPIfName", "vzCPIf", "cif-{}"),
        ),
        _cls(
            "fvRsProtBy",
            "rsprotBy-{tnVzTabooName}",
            _EPG_CHILD,
            relation=Relation("tnVzTabooName", "vzTaboo", "taboo-{}"),
        ),
        _cls(
            "fvRsIntraEpg",
            "rsintraEpg-{tnVzBrCPName}",
            _EPG_CHILD,
            relation=Relation("tnVzBrCPName", "vzBrCP", "brc-{}"),
        ),
        _cls(
            "fvRsCustQosPol",
            "rscustQosPol",
            _EPG_CHILD,
            relation=Relation("tnQosCustomPolName", "qosCustomPol", "qoscustom-{}"),
            system=True,
        ),
        _cls(
            "fvSubnet",
            "subnet-[{ip}]",
            ("fvBD", "fvAEPg"),
            {
                "ip": text(1, 64, r"[0-9a-fA-F:.]+(/\d{1,3})?"),
                "scope": flags("private", "public", "shared"),
                "preferred": YES_NO,
                "ctrl": flags("nd", "no-default-gateway", "querier", "unspecified"),
                "virtual": YES_NO,
                "ipDPLearning": ENABLED,
            },
        ),
        _cls(
            "fvBD",
            "BD-{name}",
            ("fvTenant",),
            {
                "name": OBJECT_NAME,
                "arpFlood": YES_NO,
                "unicastRoute": NO_YES_DEFAULT_YES,
                "unkMacUcastAct": enum("proxy", "flood"),
                "unkMcastAct": enum("flood", "opt-flood"),
                "multiDstPktAct": enum("bd-flood", "drop", "encap-flood"),
                "ipLearning": NO_YES_DEFAULT_YES,
                "limitIpLearnToSubnets": NO_YES_DEFAULT_YES,
                "type": enum("regular", "fc"),
                "mac": text(0, 17, r"[0-9A-Fa-f:]*", default="00:22:BD:F8:19:FF"),
                "epClear": YES_NO,
                "epMoveDetectMode": flags("garp"),
                "mcastAllow": YES_NO,
                "ipv6McastAllow": YES_NO,
                "mcastARPDrop": NO_YES_DEFAULT_YES,
                "hostBasedRouting": YES_NO,
                "llAddr": text(0, 64, r"[0-9a-fA-F:]*", default="::"),
                "vmac": text(0, 17, r"[0-9A-Fa-f:]*|not-applicable", default="not-applicable"),
                "OptimizeWanBandwidth": YES_NO,
                "intersiteBumTrafficAllow": YES_NO,
                "intersiteL2Stretch": YES_NO,
                "enableRogueExceptMac": YES_NO,
                "v6unkMcastAct": enum("flood", "opt-flood"),
                "ipv6McastAllowUpdated": YES_NO,
            },
        ),
        _cls("fvRsCtx", "rsctx", ("fvBD",), relation=Relation("tnFvCtxName", "fvCtx", "ctx-{}")),
        _named_relation(
            "fvRsABDPolMonPol", "rsABDPolMonPol", _BD_CHILD, "tnMonEPGPolName", "monEPGPol", "monepg-{}"
        ),
        _named_relation("fvRsBDToFhs", "rsBDToFhs", _BD_CHILD, "tnFhsBDPolName", "fhsBDPol", "bdpol-{}"),
        _named_relation("fvRsBDToNdP", "rsBDToNdP", _BD_CHILD, "tnNdIfPolName", "ndIfPol", "ndifpol-{}"),
        _named_relation(
            "fvRsBdToEpRet",
            "rsbdToEpRet",
            _BD_CHILD,
            "tnFvEpRetPolName",
            "fvEpRetPol",
            "epRPol-{}",
            {"resolveAct": enum("resolve", "inherit")},
        ),
        _named_relation("fvRsIgmpsn", "rsigmpsn", _BD_CHILD, "tnIgmpSnoopPolName", "igmpSnoopPol", "snPol-{}"),
        _named_relation("fvRsMldsn", "rsmldsn", _BD_CHILD, "tnMldSnoopPolName", "mldSnoopPol", "mldsnoopPol-{}"),
        _cls(
            "fvRsBDToProfile",
            "rsBDToProfile",
            _BD_CHILD,
            {"tnRtctrlProfileName": RELATION_NAME, "tnL3extOutName": RELATION_NAME},
        ),
        _named_relation(
            "fvRsBDToOut", "rsBDToOut-{tnL3extOutName}", _BD_CHILD, "tnL3extOutName", "l3extOut", "out-{}"
        ),
        _cls(
            "fvRsBDSubnetToProfile",
            "rsBDSubnetToProfile",
            ("fvSubnet",),
            {"tnRtctrlProfileName": RELATION_NAME, "tnL3extOutName": RELATION_NAME},
        ),
        _named_relation("fvRsNdPfxPol", "rsNdPfxPol", ("fvSubnet",), "tnNdPfxPolName", "ndPfxPol", "ndpfxpol-{}"),
        _cls(
            "fvCtx",
            "ctx-{name}",
            ("fvTenant",),
            {
                "name": OBJECT_NAME,
                "pcEnfPref": enum("enforced", "unenforced", numbers={"enforced": 1, "unenforced": 2}),
                "pcEnfDir": enum("ingress", "egress"),
                "knwMcastAct": enum("permit", "deny"),
                "ipDataPlaneLearning": ENABLED,
                "bdEnforcedEnable": YES_NO,
                "pcEnfDirUpdated": YES_NO,
            },
        ),
        _cls("vzAny", "any", ("fvCtx",), {"name": text(0, 64, r"[a-zA-Z0-9_.:-]*"), "matchT": MATCH_T,
                                         "prefGrMemb": DISABLED}),
        _named_relation(
            "vzRsAnyToProv", "rsanyToProv-{tnVzBrCPName}", ("vzAny",), "tnVzBrCPName", "vzBrCP", "brc-{}",
            {"prio": PRIO, "matchT": MATCH_T},
        ),
        _named_relation(
            "vzRsAnyToCons", "rsanyToCons-{tnVzBrCPName}", ("vzAny",), "tnVzBrCPName", "vzBrCP", "brc-{}",
            {"prio": PRIO},
        ),
        _named_relation(
            "vzRsAnyToConsIf", "rsanyToConsIf-{tnVzCPIfName}", ("vzAny",), "tnVzCPIfName", "vzCPIf", "cif-{}",
            {"prio": PRIO},
        ),
        _cls(
            "vzBrCP",
            "brc-{name}",
            ("fvTenant",),
            {
                "name": OBJECT_NAME,
                "scope": enum("context", "global", "tenant", "application-profile"),
                "prio": PRIO,
                "targetDscp": text(0, 16, r"[a-zA-Z0-9]*", default="unspecified"),
            },
        ),
        _cls(
            "vzSubj",
            "subj-{name}",
            ("vzBrCP",),
            {
                "name": OBJECT_NAME,
                "revFltPorts": NO_YES_DEFAULT_YES,
                "consMatchT": MATCH_T,
                "provMatchT": MATCH_T,
                "prio": PRIO,
                "targetDscp": text(0, 16, r"[a-zA-Z0-9]*", default="unspecified"),
            },
        ),
        _cls(
            "vzRsSubjFiltAtt",
            "rssubjFiltAtt-{tnVzFilterName}",
            ("vzSubj",),
            {
                "action": enum("permit", "deny"),
                "directives": flags("log", "no_stats"),
                "priorityOverride": enum("default", "level1", "level2", "level3"),
            },
            relation=Relation("tnVzFilterName", "vzFilter", "flt-{}"),
        ),
        _cls("vzInTerm", "intmnl", ("vzSubj",), {"prio": PRIO, "targetDscp": text(0, 16, default="unspecified")}),
        _cls("vzOutTerm", "outtmnl", ("vzSubj",), {"prio": PRIO, "targetDscp": text(0, 16, default="unspecified")}),
        _label("vzConsSubjLbl", "conssubjlbl-{name}", ("vzSubj",)),
        _label("vzProvSubjLbl", "provsubjlbl-{name}", ("vzSubj",)),
        _named_relation(
            "vzRsSubjGraphAtt", "rsSubjGraphAtt", ("vzSubj",), "tnVnsAbsGraphName", "vnsAbsGraph", "AbsGraph-{}",
            {"directives": flags("log", "no_stats")},
        ),
        _cls(
            "vzRsFiltAtt",
            "rsfiltAtt-{tnVzFilterName}",
            ("vzInTerm", "vzOutTerm"),
            {
                "action": enum("permit", "deny"),
                "directives": flags("log", "no_stats"),
                "priorityOverride": enum("default", "level1", "level2", "level3"),
            },
            relation=Relation("tnVzFilterName", "vzFilter", "flt-{}"),
        ),
        _cls("vzFilter", "flt-{name}", ("fvTenant",), {"name": OBJECT_NAME}),
        _cls(
            "vzEntry",
            "e-{name}",
            ("vzFilter",),
            {
                "name": OBJECT_NAME,
                "etherT": enum(
                    "unspecified", "ipv4", "ipv6", "ip", "arp", "trill", "mpls_ucast", "mac_security", "fcoe"
                ),
                "prot": PROTO,
                "dFromPort": PORT,
                "dToPort": PORT,
                "sFromPort": PORT,
                "sToPort": PORT,
                "applyToFrag": YES_NO,
                "arpOpc": enum("unspecified", "req", "reply"),
                "stateful": YES_NO,
                "tcpRules": flags("est", "syn", "ack", "fin", "rst"),
                "icmpv4T": text(0, 32, r"[a-zA-Z0-9-]*", default="unspecified"),
                "icmpv6T": text(0, 32, r"[a-zA-Z0-9-]*", default="unspecified"),
                "matchDscp": text(0, 16, r"[a-zA-Z0-9]*", default="unspecified"),
            },
        ),
        _cls("vzCPIf", "cif-{name}", ("fvTenant",), {"name": OBJECT_NAME}),
        _cls("vzTaboo", "taboo-{name}", ("fvTenant",), {"name": OBJECT_NAME}),
        _cls("qosCustomPol", "qoscustom-{name}", ("fvTenant",), {"name": OBJECT_NAME}),
        _cls("hostprotPol", "pol-{name}", ("fvTenant",), {"name": OBJECT_NAME}),
        _cls("hostprotSubj", "subj-{name}", ("hostprotPol",), {"name": OBJECT_NAME}),
        _cls(
            "hostprotRule",
            "rule-{name}",
            ("hostprotSubj",),
            {
                "name": OBJECT_NAME,
                "direction": enum("ingress", "egress"),
                "ethertype": enum("undefined", "ipv4", "ipv6", "arp"),
                "protocol": PROTO,
                "fromPort": PORT,
                "toPort": PORT,
                "connTrack": enum("reflexive", "normal"),
            },
        ),
        _cls(
            "hostprotRemoteIp",
            "ip-[{addr}]",
            ("hostprotRule",),
            {
                "addr": text(1, 64, r"[0-9a-fA-F:.]+(/\d{1,3})?"),
            },
        ),
        _cls("tagInst", "tag-{name}", (ANY_PARENT,), {"name": text(1, 64, r"[a-zA-Z0-9_.:-]+")}),
        _cls(
            "tagAnnotation",
            "annotationKey-[{key}]",
            (ANY_PARENT,),
            {
                "key": text(1, 128, r"[a-zA-Z0-9_.:-]+"),
                "value": text(0, 128),
            },
        ),
        _cls(
            "tagTag",
            "tagKey-{key}",
            (ANY_PARENT,),
            {"key": text(1, 128, r"[a-zA-Z0-9_.:-]+"), "value": text(0, 128)},
        ),
        _cls("fvESg", "esg-{name}", ("fvAp",), {"name": AP_EPG_NAME, "pcEnfPref": enum("unenforced", "enforced")}),
        _cls("fvEpTags", "eptags", ("fvTenant",), system=True),
        _cls(
            "fvRsTenantMonPol",
            "rsTenantMonPol",
            ("fvTenant",),
            relation=Relation("tnMonEPGPolName", "monEPGPol", "monepg-{}"),
            system=True,
        ),
        _cls("vnsSvcCont", "svcCont", ("fvTenant",), system=True),
        _cls("monEPGPol", "monepg-{name}", ("fvTenant",), {"name": OBJECT_NAME}),
    ]
}


def child_classes(parent: str) -> list[ClassMeta]:
    """Classes that may be contained by `parent`, longest RN prefix first (`rsprotBy-` before `rsprov-`)."""
    found = [m for m in CLASSES.values() if parent in m.parents or ANY_PARENT in m.parents]
    return sorted(found, key=lambda m: len(m.rn_prefix), reverse=True)


def class_for_rn(parent: str, rn: str) -> tuple[ClassMeta, dict[str, str]] | None:
    """The class and naming properties of `rn` under an object of class `parent`."""
    for meta in child_classes(parent):
        naming = meta.naming_from_rn(rn)
        if naming is not None:
            return meta, naming
    return None


def split_dn(dn: str) -> list[str]:
    """The RNs of `dn`; slashes inside brackets (``subnet-[10.0.0.0/24]``) do not split."""
    rns: list[str] = []
    depth = 0
    current = ""
    for char in dn:
        if char == "[":
            depth += 1
        elif char == "]":
            depth = max(0, depth - 1)
        if char == "/" and depth == 0:
            rns.append(current)
            current = ""
        else:
            current += char
    rns.append(current)
    return [rn for rn in rns if rn]


def parent_dn(dn: str) -> str:
    rns = split_dn(dn)
    return "/".join(rns[:-1])
