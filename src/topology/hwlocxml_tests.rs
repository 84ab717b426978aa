//! The hwloc XML reader on small hand-written exports: structure, attribute grammar, v1
//! specifics, and refusals.

use super::*;

fn read(text: &str) -> Result<Parsed, TopologyError> {
    parse(Path::new("t.xml"), text)
}

fn err(text: &str) -> String {
    read(text).err().expect("refused").to_string()
}

/// A v2 export: a package with NUMA node 1 holding a host bridge, a root port, a switch with
/// one GPU (and its cuda OS device) and a NIC with OpenFabrics + network OS devices. The
/// memory child is written first, as hwloc does; the I/O children come after the core.
const V2: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE topology SYSTEM "hwloc2.dtd">
<topology version="2.0">
  <object type="Machine" os_index="0" cpuset="0x3" nodeset="0x00000003">
    <info name="HostName" value="node7"/>
    <object type="Package" os_index="0" cpuset="0x1" nodeset="0x00000002">
      <object type="NUMANode" os_index="1" cpuset="0x1" nodeset="0x00000002"/>
      <object type="Core" os_index="0" cpuset="0x1" nodeset="0x00000002">
        <object type="PU" os_index="0" cpuset="0x1" nodeset="0x00000002"/>
      </object>
      <object type="Bridge" bridge_type="0-1" depth="0" bridge_pci="0001:[40-4f]">
        <object type="Bridge" pci_busid="0001:40:01.0" pci_type="0604 [1022:1453] [0000:0000] 00" pci_link_speed="31.507692" bridge_type="1-1" depth="1" bridge_pci="0001:[41-4f]">
          <object type="Bridge" pci_busid="0001:41:00.0" pci_type="0604 [10b5:8796] [0000:0000] ca" pci_link_speed="31.507692" bridge_type="1-1" depth="2" bridge_pci="0001:[42-4f]">
            <object type="Bridge" pci_busid="0001:42:08.0" pci_type="0604 [10b5:8796] [0000:0000] ca" pci_link_speed="15.753846" bridge_type="1-1" depth="3" bridge_pci="0001:[43-43]">
              <object type="PCIDev" pci_busid="0001:43:00.0" pci_type="0302 [10de:20b0] [10de:134f] a1" pci_link_speed="15.753846">
                <info name="PCIVendor" value="NVIDIA Corporation"/>
                <info name="PCIDevice" value="GA100"/>
                <object type="OSDev" name="cuda0" subtype="CUDA" osdev_type="5"/>
              </object>
            </object>
            <object type="Bridge" pci_busid="0001:42:10.0" pci_type="0604 [10b5:8796] [0000:0000] ca" pci_link_speed="31.507692" bridge_type="1-1" depth="3" bridge_pci="0001:[44-44]">
              <object type="PCIDev" pci_busid="0001:44:00.0" pci_type="0207 [15b3:101b] [15b3:0007] 00" pci_link_speed="31.507692">
                <object type="OSDev" name="ib0" osdev_type="2"/>
                <object type="OSDev" name="mlx5_0" osdev_type="3"/>
              </object>
            </object>
          </object>
        </object>
      </object>
    </object>
  </object>
</topology>
"#;

#[test]
fn reads_the_tree_as_hwloc_loads_it() {
    let p = read(V2).unwrap();
    assert_eq!(p.hostname.as_deref(), Some("node7"));
    let t = &p.tree;
    let kinds: Vec<NodeKind> = t.iter().map(|n| n.kind).collect();
    use NodeKind::*;
    assert_eq!(kinds, [HostBridge, RootPort, SwitchUpstream, SwitchDownstream, Device, SwitchDownstream, Device]);
    assert_eq!(t[0].pci, "0001:40");
    assert_eq!(t[0].vendor_device, None);
    assert_eq!(t[4].pci, "0001:43:00.0");
    assert_eq!(t[4].parent, Some(3));
    assert_eq!(t[4].vendor_device.as_deref(), Some("10de:20b0"));
    assert_eq!(t[4].class_id, Some(0x0302));
    assert_eq!(t[4].name.as_deref(), Some("NVIDIA Corporation GA100"));
    assert_eq!(t[4].link_GBps, Some(15.753846));
    // The package's nodeset (bit 1), not the machine's.
    assert_eq!(t[4].numa_nodes, vec![1]);
    assert_eq!(
        t[4].os_devices,
        vec![OsDevice { name: "cuda0".into(), kind: OsDeviceKind::CoProcessor, subtype: Some("CUDA".into()) }]
    );
    let nic: Vec<(&str, OsDeviceKind)> = t[6].os_devices.iter().map(|d| (d.name.as_str(), d.kind)).collect();
    assert_eq!(nic, [("ib0", OsDeviceKind::Network), ("mlx5_0", OsDeviceKind::OpenFabrics)]);
}

#[test]
fn io_children_come_after_normal_children_whatever_the_file_order() {
    // A host bridge written before a Group that holds another: hwloc walks the Group first.
    let text = r#"<topology version="2.0"><object type="Machine" nodeset="0x1">
      <object type="Bridge" bridge_type="0-1" bridge_pci="0000:[80-80]"/>
      <object type="Group" nodeset="0x1"><object type="Bridge" bridge_type="0-1" bridge_pci="0000:[00-00]"/></object>
    </object></topology>"#;
    let p = read(text).unwrap();
    assert_eq!(p.tree.iter().map(|n| n.pci.as_str()).collect::<Vec<_>>(), ["0000:00", "0000:80"]);
}

#[test]
fn v1_files_take_the_subtype_from_the_type_info_and_numa_from_the_nearest_nodeset() {
    let text = r#"<topology><object type="Machine" nodeset="0x00000003,0x00000000">
      <object type="NUMANode" os_index="0" nodeset="0x00000001,0x00000000">
        <object type="Bridge" bridge_type="0-1" bridge_pci="0000:[00-01]">
          <object type="PCIDev" pci_busid="0000:01:00.0" pci_type="0302 [10de:1db1] [10de:1212] a1" pci_link_speed="0">
            <object type="OSDev" name="cuda0" osdev_type="5"><info name="CoProcType" value="CUDA"/></object>
          </object>
        </object>
      </object>
    </object></topology>"#;
    let p = read(text).unwrap();
    let gpu = &p.tree[1];
    assert_eq!(gpu.numa_nodes, vec![32]);
    assert_eq!(gpu.link_GBps, None, "a zero speed is unknown");
    assert_eq!(gpu.os_devices[0].subtype.as_deref(), Some("CUDA"));
}

#[test]
fn bitmaps_read_as_hwloc_writes_them() {
    assert_eq!(parse_bitmap("0x0"), Some(vec![]));
    assert_eq!(parse_bitmap("0x00000005"), Some(vec![0, 2]));
    assert_eq!(parse_bitmap("0x00000001,0x80000000"), Some(vec![31, 32]));
    assert_eq!(parse_bitmap("0xf...f,0x00000002"), Some(vec![1]));
    assert_eq!(parse_bitmap("0xzz"), None);
    assert_eq!(parse_bitmap("5"), None);
    assert_eq!(parse_bitmap(&vec!["0x1"; MAX_BITMAP_WORDS + 1].join(",")), None);
}

#[test]
fn attribute_grammar() {
    assert_eq!(parse_busid("0000:c1:00.1"), Some((0, 0xc1, 0, 1)));
    assert_eq!(parse_busid("10000:01:1f.7"), Some((0x10000, 1, 0x1f, 7)));
    assert_eq!(parse_busid("0000:zz:00.0"), None);
    assert_eq!(parse_busid("0000:100:00.0"), None);
    assert_eq!(parse_pci_type("0302 [10de:20b0] [10de:134f] a1"), Some((0x0302, 0x10de, 0x20b0)));
    assert_eq!(parse_pci_type("0302 [10de:20b0]"), None);
    assert_eq!(parse_pci_type("12345 [10de:20b0] [10de:134f] a1"), None);
    assert_eq!(parse_bridge_pci("0000:[00-07]"), Some((0, 0)));
    assert_eq!(parse_bridge_pci("0002:[80-ff]"), Some((2, 0x80)));
    assert_eq!(parse_bridge_pci("0002:80"), None);
    assert_eq!(parse_pair("1-1"), Some((1, 1)));
    assert_eq!(parse_pair("PCIDev"), None);
    for t in ["Machine", "package", "Socket", "L3Cache", "L1iCache", "Cache", "Die", "System"] {
        assert_eq!(category(t), Some(Category::Normal), "{t}");
    }
    assert_eq!(category("NUMANode"), Some(Category::Memory));
    assert_eq!(category("OSDev"), Some(Category::Io));
    assert_eq!(category("NaN"), None);
    assert_eq!(category("L"), None);
}

#[test]
fn refusals_name_the_file_the_line_and_the_value() {
    let damaged = |from: &str, to: &str| {
        assert!(V2.contains(from), "{from}");
        err(&V2.replacen(from, to, 1))
    };
    let e = damaged(r#"type="Core""#, r#"type="NaN""#);
    assert!(e.contains("t.xml") && e.contains("line 8") && e.contains("unknown hwloc object type \"NaN\""), "{e}");
    let e = damaged(r#"bridge_type="1-1" depth="1""#, r#"bridge_type="PCIDev" depth="1""#);
    assert!(e.contains("line 12") && e.contains("bridge_type=\"PCIDev\""), "{e}");
    assert!(damaged(r#"bridge_type="1-1" depth="1""#, r#"bridge_type="1-7" depth="1""#).contains("0 (host) and 1 (PCI)"));
    assert!(damaged("0001:43:00.0", "0001:zz:00.0").contains("pci_busid=\"0001:zz:00.0\""));
    assert!(damaged("0302 [10de:20b0]", "0302 [10de:20b0x]").contains("pci_type="));
    assert!(damaged(r#"pci_link_speed="15.753846">"#, r#"pci_link_speed="fast">"#).contains("not a number"));
    assert!(damaged(r#"osdev_type="3""#, r#"osdev_type="x""#).contains("osdev_type=\"x\""));
    assert!(damaged(r#"nodeset="0x00000002">"#, r#"nodeset="lots">"#).contains("nodeset=\"lots\""));
    assert!(damaged("0001:[40-4f]", "0001:40").contains("bridge_pci="));
    assert!(damaged(r#"<topology version="2.0">"#, r#"<topology version="3.0">"#).contains("v1 and v2"));
    assert!(err("<topology version=\"2.0\"></topology>").contains("no <object>"));
    // Odd but valid numbers are what hwloc makes of them: no speed.
    let p = read(&V2.replacen(r#"pci_link_speed="15.753846">"#, r#"pci_link_speed="1e309">"#, 1)).unwrap();
    assert_eq!(p.tree[4].link_GBps, None);
}

#[test]
fn entity_declarations_are_refused_before_parsing() {
    let laughs = r#"<?xml version="1.0"?>
<!DOCTYPE topology [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>
<topology version="2.0"><object type="Machine"><info name="HostName" value="&c;"/></object></topology>"#;
    assert!(err(laughs).contains("<!ENTITY"), "billion laughs");
    let xxe = r#"<!DOCTYPE topology [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<topology version="2.0"><object type="Machine"><info name="HostName" value="&x;"/></object></topology>"#;
    assert!(err(xxe).contains("refused"), "external entity");
}
