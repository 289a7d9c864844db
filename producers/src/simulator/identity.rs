//! Direct identifiers of simulated patients, derived from (seed, patient index) so they need no
//! storage. They look like the real thing (an 18-character resident ID with its check character,
//! a Chinese name, a mobile number, an address) because the edge must prove that none of them
//! leaves the hospital.

use sha2::{Digest, Sha256};

pub use crate::edge::resident_id::check_char as resident_id_check_char;
use vigil_schemas::Sex;

const SURNAMES: [&str; 20] = [
    "王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱", "胡", "郭",
    "何", "高", "林", "罗",
];
const GIVEN: [&str; 24] = [
    "伟", "芳", "娜", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛", "明",
    "超", "秀英", "霞", "平", "刚", "桂英", "建华", "玉兰",
];
const STREETS: [&str; 8] = [
    "文三路",
    "天目山路",
    "莫干山路",
    "延安路",
    "解放路",
    "凤起路",
    "庆春路",
    "体育场路",
];

/// Identifiers of one simulated person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub national_id: String,
    pub name: String,
    pub phone: String,
    pub address: String,
}

fn digest(seed: u64, index: u32, purpose: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(seed.to_le_bytes());
    hasher.update(index.to_le_bytes());
    hasher.update(purpose.as_bytes());
    hasher.finalize().into()
}

/// The identity of patient `index`. Resident IDs are unique for up to five million patients.
pub fn identity(
    seed: u64,
    index: u32,
    sex: Sex,
    birth_year: i32,
    birth_day_of_year: u16,
) -> Identity {
    let (_, month, day) = vigil_runtime::time::civil_from_days(
        vigil_runtime::time::days_from_civil(birth_year, 1, 1) + birth_day_of_year as i32 - 1,
    );
    // Region digits and sequence carry the index, so two patients never share an ID; the
    // sequence's parity is the sex, as in real IDs.
    let region = 330_000 + (index / 500) % 10_000;
    let sequence = (index % 500) * 2 + u32::from(sex == Sex::Male);
    let body = format!("{region:06}{birth_year:04}{month:02}{day:02}{sequence:03}");
    let national_id = format!("{body}{}", resident_id_check_char(&body));

    let d = digest(seed, index, "name");
    let name = format!(
        "{}{}",
        SURNAMES[d[0] as usize % SURNAMES.len()],
        GIVEN[d[1] as usize % GIVEN.len()]
    );
    let p = digest(seed, index, "phone");
    let phone = format!(
        "1{}{:09}",
        3 + p[0] % 7,
        u64::from_le_bytes([p[1], p[2], p[3], p[4], p[5], p[6], p[7], 0]) % 1_000_000_000
    );
    let a = digest(seed, index, "address");
    let address = format!(
        "浙江省杭州市{}{}号{}室",
        STREETS[a[0] as usize % STREETS.len()],
        1 + a[1] as u32 % 300,
        101 + a[2] as u32 % 1800
    );
    Identity {
        national_id,
        name,
        phone,
        address,
    }
}

/// The hospital's medical record number for a patient.
pub fn medical_record_number(hospital: u16, index: u32) -> String {
    format!("MRN{:02}{index:08}", hospital % 100)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn resident_ids_are_valid_unique_and_encode_sex() {
        // A published example: 11010519491231002X.
        assert_eq!(resident_id_check_char("11010519491231002"), 'X');
        let mut seen = HashSet::new();
        for index in 0..20_000 {
            let sex = if index % 3 == 0 {
                Sex::Female
            } else {
                Sex::Male
            };
            let id = identity(1, index, sex, 1960, 100).national_id;
            assert_eq!(id.len(), 18);
            assert_eq!(id.chars().last(), Some(resident_id_check_char(&id[..17])));
            let sequence: u32 = id[14..17].parse().unwrap();
            assert_eq!(sequence % 2 == 1, sex == Sex::Male);
            assert!(seen.insert(id));
        }
    }

    #[test]
    fn identities_are_deterministic() {
        assert_eq!(
            identity(5, 9, Sex::Female, 1950, 3),
            identity(5, 9, Sex::Female, 1950, 3)
        );
        assert_ne!(
            identity(5, 9, Sex::Female, 1950, 3).name + "x",
            identity(5, 9, Sex::Female, 1950, 3).name
        );
        assert!(identity(5, 9, Sex::Female, 1950, 3).phone.starts_with('1'));
    }
}
