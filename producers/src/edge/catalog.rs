//! The edge's catalogue: hospitals (deploy/edge/hospitals.toml), their vendors' table shapes
//! (vendors/) and code tables (codes/). Loaded and cross-checked as a unit; a broken edit is
//! refused with a message naming the file, and the previous catalogue stays in force.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use vigil_schemas::terminology::Observation;

use super::shapes::VendorShape;
use crate::error::ProducerError;

/// A local laboratory code: the LOINC code it stands for and the unit the lab reports it in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabCode {
    pub loinc: String,
    pub unit: String,
}

/// Local codes of one vendor or hospital.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeTable {
    #[serde(default)]
    pub lab: BTreeMap<String, LabCode>,
    /// Local diagnosis code -> ICD-10 (for vendors that do not record ICD-10 directly).
    #[serde(default)]
    pub diagnosis: BTreeMap<String, String>,
    /// Local drug code -> WHO ATC.
    #[serde(default)]
    pub drug: BTreeMap<String, String>,
}

impl CodeTable {
    fn merge(&mut self, other: &CodeTable) {
        self.lab
            .extend(other.lab.iter().map(|(k, v)| (k.clone(), v.clone())));
        self.diagnosis
            .extend(other.diagnosis.iter().map(|(k, v)| (k.clone(), v.clone())));
        self.drug
            .extend(other.drug.iter().map(|(k, v)| (k.clone(), v.clone())));
    }

    fn validate(&self, origin: &str) -> Result<(), String> {
        for (code, entry) in &self.lab {
            // Tests Vigil has no rule for pass through as reported; known ones must convert.
            if let Some(concept) = Observation::from_loinc(&entry.loinc) {
                if concept.to_canonical(1.0, &entry.unit).is_none() {
                    return Err(format!(
                        "{origin}: lab code {code}: unit '{}' does not fit LOINC {}",
                        entry.unit, entry.loinc
                    ));
                }
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HospitalEntry {
    id: String,
    server_name: String,
    vendor: String,
    #[serde(default)]
    codes: Vec<String>,
    /// How the hospital's HL7 v2 messages name it (MSH-4, the sending facility); its id if unset.
    #[serde(default)]
    hl7_facility: Option<String>,
    /// The identifier type (PID-3's CX.5) of the resident identity number in its HL7 messages.
    #[serde(default = "national_identifier_type")]
    hl7_resident_id_type: String,
}

/// HL7 table 0203's national person identifier, for China.
fn national_identifier_type() -> String {
    "NNCHN".to_string()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct HospitalsFile {
    hospital: Vec<HospitalEntry>,
}

/// Everything the edge knows about one hospital.
#[derive(Debug, Clone, PartialEq)]
pub struct HospitalProfile {
    pub id: String,
    /// Debezium's logical server name (source.name) of the hospital's connector.
    pub server_name: String,
    /// The sending facility (MSH-4) of the hospital's HL7 v2 messages.
    pub hl7_facility: String,
    /// PID-3's identifier type for the resident identity number.
    pub hl7_resident_id_type: String,
    pub vendor: Arc<VendorShape>,
    pub codes: CodeTable,
}

/// The loaded catalogue.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    by_server: HashMap<String, Arc<HospitalProfile>>,
    by_facility: HashMap<String, Arc<HospitalProfile>>,
    by_id: BTreeMap<String, Arc<HospitalProfile>>,
    /// Newest modification time of the files it came from (reload detection).
    pub loaded_from: Option<SystemTime>,
}

fn read(path: &Path) -> Result<String, ProducerError> {
    std::fs::read_to_string(path).map_err(|source| ProducerError::Io {
        path: path.display().to_string(),
        source,
    })
}

fn parse<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ProducerError> {
    toml::from_str(&read(path)?)
        .map_err(|e| ProducerError::Config(format!("{}: {e}", path.display())))
}

fn toml_files(dir: &Path) -> Result<Vec<PathBuf>, ProducerError> {
    let entries = std::fs::read_dir(dir).map_err(|source| ProducerError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("toml"))
        .collect();
    files.sort();
    Ok(files)
}

/// Newest modification time among the catalogue's files.
pub fn newest_change(dir: &Path) -> Option<SystemTime> {
    let mut files = vec![dir.join("hospitals.toml")];
    for sub in ["vendors", "codes"] {
        files.extend(toml_files(&dir.join(sub)).unwrap_or_default());
    }
    files
        .iter()
        .filter_map(|f| std::fs::metadata(f).and_then(|m| m.modified()).ok())
        .max()
}

impl Catalog {
    /// Loads `dir` (hospitals.toml, vendors/, codes/) and checks it hangs together.
    pub fn load(dir: &Path) -> Result<Catalog, ProducerError> {
        let stamp = newest_change(dir);
        let mut vendors: HashMap<String, Arc<VendorShape>> = HashMap::new();
        for path in toml_files(&dir.join("vendors"))? {
            let shape: VendorShape = parse(&path)?;
            shape
                .validate()
                .map_err(|e| ProducerError::Config(format!("{}: {e}", path.display())))?;
            vendors.insert(shape.name.clone(), Arc::new(shape));
        }
        let mut tables: HashMap<String, CodeTable> = HashMap::new();
        for path in toml_files(&dir.join("codes"))? {
            let table: CodeTable = parse(&path)?;
            let name = path
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_string();
            table
                .validate(&path.display().to_string())
                .map_err(ProducerError::Config)?;
            tables.insert(name, table);
        }
        let hospitals_path = dir.join("hospitals.toml");
        let file: HospitalsFile = parse(&hospitals_path)?;
        let mut catalog = Catalog {
            loaded_from: stamp,
            ..Catalog::default()
        };
        let fail =
            |msg: String| ProducerError::Config(format!("{}: {msg}", hospitals_path.display()));
        for entry in file.hospital {
            if !vigil_schemas::validate::is_hospital_id(&entry.id) {
                return Err(fail(format!(
                    "hospital id '{}' must be 1 to 64 letters, digits, '-', '_' or '.'",
                    entry.id
                )));
            }
            let vendor = vendors.get(&entry.vendor).cloned().ok_or_else(|| {
                fail(format!(
                    "hospital {} names unknown vendor '{}'",
                    entry.id, entry.vendor
                ))
            })?;
            let mut codes = CodeTable::default();
            for name in &entry.codes {
                let table = tables.get(name).ok_or_else(|| {
                    fail(format!(
                        "hospital {} names unknown code table '{name}'",
                        entry.id
                    ))
                })?;
                codes.merge(table);
            }
            let profile = Arc::new(HospitalProfile {
                id: entry.id.clone(),
                server_name: entry.server_name.clone(),
                hl7_facility: entry
                    .hl7_facility
                    .clone()
                    .unwrap_or_else(|| entry.id.clone()),
                hl7_resident_id_type: entry.hl7_resident_id_type.clone(),
                vendor,
                codes,
            });
            if catalog
                .by_id
                .insert(entry.id.clone(), profile.clone())
                .is_some()
            {
                return Err(fail(format!("hospital {} is listed twice", entry.id)));
            }
            if catalog
                .by_facility
                .insert(profile.hl7_facility.clone(), profile.clone())
                .is_some()
            {
                return Err(fail(format!(
                    "HL7 facility {} is used by two hospitals",
                    profile.hl7_facility
                )));
            }
            if catalog
                .by_server
                .insert(entry.server_name.clone(), profile)
                .is_some()
            {
                return Err(fail(format!(
                    "server name {} is used by two hospitals",
                    entry.server_name
                )));
            }
        }
        Ok(catalog)
    }

    /// The hospital whose connector calls itself `server_name`.
    pub fn by_server(&self, server_name: &str) -> Option<&Arc<HospitalProfile>> {
        self.by_server.get(server_name)
    }

    /// The hospital whose HL7 v2 messages come from `facility` (MSH-4).
    pub fn by_facility(&self, facility: &str) -> Option<&Arc<HospitalProfile>> {
        self.by_facility.get(facility)
    }

    pub fn by_id(&self, id: &str) -> Option<&Arc<HospitalProfile>> {
        self.by_id.get(id)
    }

    /// Hospitals in id order.
    pub fn hospitals(&self) -> impl Iterator<Item = &Arc<HospitalProfile>> {
        self.by_id.values()
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/edge")
    }

    #[test]
    fn the_shipped_catalogue_loads() {
        let catalog = Catalog::load(&shipped()).unwrap();
        assert_eq!(catalog.len(), 12);
        let h2 = catalog.by_server("his-h0002").unwrap();
        assert_eq!(h2.id, "H0002");
        assert_eq!(h2.vendor.name, "vendor_b");
        assert_eq!(h2.codes.lab["LAB0102"].unit, "mg/dL");
        assert_eq!(h2.codes.diagnosis["HTN"], "I10");
        assert!(catalog.by_server("his-unknown").is_none());
    }

    #[test]
    fn broken_edits_are_refused_with_the_file_named() {
        let dir = std::env::temp_dir().join(format!("vigil-edge-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("vendors")).unwrap();
        std::fs::create_dir_all(dir.join("codes")).unwrap();
        for vendor in ["vendor_a", "vendor_b", "vendor_c"] {
            std::fs::copy(
                shipped().join(format!("vendors/{vendor}.toml")),
                dir.join(format!("vendors/{vendor}.toml")),
            )
            .unwrap();
            std::fs::copy(
                shipped().join(format!("codes/{vendor}.toml")),
                dir.join(format!("codes/{vendor}.toml")),
            )
            .unwrap();
        }
        let write_hospitals =
            |text: &str| std::fs::write(dir.join("hospitals.toml"), text).unwrap();
        write_hospitals("[[hospital]]\nid = \"X\"\nserver_name = \"s\"\nvendor = \"vendor_z\"\n");
        assert!(Catalog::load(&dir)
            .unwrap_err()
            .to_string()
            .contains("unknown vendor 'vendor_z'"));
        write_hospitals("[[hospital]]\nid = \"X\"\nserver_name = \"s\"\nvendor = \"vendor_a\"\ncodes = [\"nope\"]\n");
        assert!(Catalog::load(&dir)
            .unwrap_err()
            .to_string()
            .contains("unknown code table 'nope'"));
        write_hospitals("[[hospital]]\nid = \"X\"\nserver_name = \"s\"\nvendor = \"vendor_a\"\n[[hospital]]\nid = \"Y\"\nserver_name = \"s\"\nvendor = \"vendor_a\"\n");
        assert!(Catalog::load(&dir)
            .unwrap_err()
            .to_string()
            .contains("used by two hospitals"));
        write_hospitals("[[hospital]]\nid = \"X\"\nserver_name = \"s\"\nvendor = \"vendor_a\"\ncodes = [\"vendor_a\"]\n");
        std::fs::write(
            dir.join("codes/vendor_a.toml"),
            "[lab]\nGLU = { loinc = \"14749-6\", unit = \"g/L\" }\n",
        )
        .unwrap();
        let err = Catalog::load(&dir).unwrap_err().to_string();
        assert!(
            err.contains("vendor_a.toml") && err.contains("does not fit"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
