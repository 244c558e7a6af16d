//! Child process of the crash test: captures incidents with photos in a
//! loop and prints each acknowledged one as `<incident id> <photo sha256>`
//! on stdout, flushed, only after `submit` returned. The parent kills it
//! with SIGKILL at random moments.
//!
//! Usage: crash_capture_child DATA_DIR PHOTO_DIR RUN_NUMBER

use std::io::Write;
use std::path::PathBuf;

use gridwork_core::DraftFields;

fn main() {
    let mut args = std::env::args().skip(1);
    let data_dir = PathBuf::from(args.next().expect("data dir"));
    let photo_dir = PathBuf::from(args.next().expect("photo dir"));
    let run: u32 = args.next().expect("run number").parse().expect("run number");
    let mut photos: Vec<_> = std::fs::read_dir(&photo_dir).unwrap().map(|e| e.unwrap().path()).collect();
    photos.sort();

    let gw = gridwork_tests::open(&data_dir, "crash-worker");
    let stdout = std::io::stdout();
    for n in 0u32.. {
        let draft = gw
            .create_draft(DraftFields {
                category_code: Some("0602".into()),
                description: format!("run {run} capture {n}"),
                ..Default::default()
            })
            .expect("create draft");
        let photo = gw.attach_photo(draft.id, &photos[((run * 7 + n) as usize) % photos.len()]).expect("attach");
        gw.submit(draft.id).expect("submit");
        let mut out = stdout.lock();
        writeln!(out, "{} {}", draft.id, photo.sha256).unwrap();
        out.flush().unwrap();
    }
}
