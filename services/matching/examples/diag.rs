use std::collections::HashMap;
use std::fs::File;
use tessera_matching::*;
fn main() -> anyhow::Result<()> {
    let a: Vec<String> = std::env::args().collect();
    let rows = read_records_csv(File::open(&a[1])?)?;
    let truth = read_records_csv(File::open(&a[2]).map(|f| f)?);
    let _ = truth;
    let assigned: HashMap<String, String> = std::fs::read_to_string(&a[3])?
        .lines()
        .skip(1)
        .map(|l| {
            let p: Vec<_> = l.split(',').collect();
            (p[1].to_string(), p[2].to_string())
        })
        .collect();
    let model = if a.len() > 4 {
        Model::from_json(&std::fs::read_to_string(&a[4])?)?
    } else {
        Model::builtin()
    };
    let mut by_person: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, (k, _)) in rows.iter().enumerate() {
        let person = k.local_id.split('-').nth(1).unwrap_or("").to_string();
        by_person.entry(person).or_default().push(i);
    }
    let mut n = 0;
    let mut persons: Vec<_> = by_person.into_iter().collect();
    persons.sort();
    for (_, members) in persons {
        for x in 0..members.len() {
            for y in x + 1..members.len() {
                let (i, j) = (members[x], members[y]);
                if assigned[&rows[i].0.local_id] == assigned[&rows[j].0.local_id] {
                    continue;
                }
                n += 1;
                if n > 40 {
                    continue;
                }
                let e = explain(&model, &rows[i].1, &rows[j].1);
                println!("{:.1} {:?} {:?}", e.score, e.decision, e.conflict);
                println!("  {:?}\n  {:?}", rows[i].1, rows[j].1);
                println!(
                    "  {}",
                    e.field_weights
                        .iter()
                        .map(|w| format!("{}={}:{:.1}", w.field, w.level, w.weight))
                        .collect::<Vec<_>>()
                        .join(" ")
                );
            }
        }
    }
    println!("missed pairs {n}");
    Ok(())
}
