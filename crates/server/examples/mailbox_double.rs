//! The EWS mailbox double (testkit) as a process, for the forwarding benchmark
//! (`bench/forward_load.sh`): one mailbox `bench@example.com` (password `bench-password`) with a
//! voice message. Prints its EWS URL on stdout, then serves until killed. The double logs every
//! request; the log is cleared every second so a long run does not grow without bound.

use std::io::Write as _;
use std::time::Duration;

use testkit::mailbox::{Attachment, Item, Mailbox, MailboxDouble};

// Same allocator as the `openum` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut builder = MailboxDouble::builder();
    let mailbox = builder.mailbox(Mailbox::new("bench@example.com").password("bench-password"));
    builder.item(
        &mailbox,
        Item::voicemail("Voice Mail from 5551212").attachment(Attachment::file(
            "audio.wav",
            "audio/wav",
            vec![0u8; 1024],
        )),
    );
    let double = builder.start().await?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "{}", double.url())?;
    stdout.flush()?;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        double.clear_requests();
    }
}
