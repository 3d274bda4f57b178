//! The slow rung for the web side: `cmdeploy run` into Debian 12 rootfs copies for each TLS mode,
//! then `nginx -t` in the root, the website files, the ACME certificate link and its hook, and a
//! no-op re-run. Needs root, the cached rootfs; ignored unless run with `--include-ignored`.

#![allow(clippy::unwrap_used)] // a test fails by panicking

mod support;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use support::*;

const ACME: &str = "mail_domain = chat.example.org\nprivacy_mail = privacy@chat.example.org\n";
const UNDERSCORE: &str = "mail_domain = _chat.example.org\n";
const IPV4: &str = "mail_domain = 10.77.0.2\ndisable_ipv6 = true\n";
const EXTERNAL: &str = "mail_domain = chat.example.org\n\
    tls_external_cert_and_key = /etc/certs/fullchain.pem /etc/certs/key.pem\n";

fn nginx_accepts(root: &Root) {
    let test = root.chroot(&["nginx", "-t"]);
    assert!(
        test.status.success(),
        "nginx -t: {}",
        String::from_utf8_lossy(&test.stderr)
    );
}

fn text(root: &Root, path: &str) -> String {
    String::from_utf8(root.read(path)).unwrap()
}

fn owner(root: &Root, path: &str) -> (u32, u32) {
    let meta = std::fs::metadata(root.path.join(path.trim_start_matches('/'))).unwrap();
    (meta.uid(), meta.gid())
}

/// The text of the one QR code in the PNG image at `path` in the root.
fn qr_code(root: &Root, path: &str) -> String {
    let data = root.read(path);
    let mut reader = png::Decoder::new(std::io::Cursor::new(data))
        .read_info()
        .unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut pixels).unwrap();
    assert_eq!(info.color_type, png::ColorType::Grayscale);
    let (width, height) = (info.width as usize, info.height as usize);
    let mut image =
        rqrr::PreparedImage::prepare_from_greyscale(width, height, |x, y| pixels[y * width + x]);
    let grids = image.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code in {path}");
    grids[0].decode().unwrap().1
}

/// www-data is uid and gid 33 on Debian (base-passwd).
const WWW_DATA: (u32, u32) = (33, 33);

/// Deploys `body`, checks what every fixture shares, and that a second run does nothing.
fn deploy_and_check(root: &Root, body: &str, domain: &str) {
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path(), body);
    let first = root_deploy(root, &config, &[]);
    assert!(first.ok);
    nginx_accepts(root);
    let conf = text(root, "/etc/nginx/nginx.conf");
    assert!(conf.starts_with("# Written by cmdeploy"), "{conf}");
    let index = text(root, "/var/www/html/index.html");
    assert!(index.contains(domain), "{index}");
    assert_eq!(owner(root, "/var/www/html/index.html"), WWW_DATA);
    let robots = text(root, "/var/www/html/robots.txt");
    assert!(robots.ends_with("User-agent: *\nDisallow: /\n"), "{robots}");
    let qr = format!("/var/www/html/qr-chatmail-invite-{domain}.png");
    assert_eq!(
        qr_code(root, &qr),
        format!("DCACCOUNT:https://{domain}/new")
    );
    assert_eq!(owner(root, &qr), WWW_DATA);
    if domain.starts_with('_') || domain.starts_with(|c: char| c.is_ascii_digit()) {
        assert!(
            index.contains("dclogin"),
            "self-signed: the dclogin flow\n{index}"
        );
    } else {
        assert!(index.contains(&format!("src=\"/qr-chatmail-invite-{domain}.png\"")));
    }
    let autoconfig = text(
        root,
        "/var/www/html/.well-known/autoconfig/mail/config-v1.1.xml",
    );
    assert!(autoconfig.contains("<port>443</port>"), "{autoconfig}");
    assert!(text(root, "/var/www/html/.well-known/mta-sts.txt").contains("mode: enforce"));

    let again = root_deploy(root, &config, &["-v"]);
    assert!(again.ok);
    assert!(
        again.stdout.contains("nothing to change"),
        "{}",
        again.stdout
    );
    assert!(!again.all().contains("[$"), "a no-op run runs no command");
}

#[test]
#[ignore = "slow: root, a Debian 12 rootfs"]
fn acme_domain_serves_through_a_stand_in_that_the_acmetool_hook_replaces() {
    let root = installed_root("web-acme");
    std::fs::create_dir_all(root.path.join("etc/cron.d")).unwrap();
    std::fs::write(root.path.join("etc/cron.d/acmetool"), "# old\n").unwrap();
    std::fs::create_dir_all(root.path.join("var/lib/acme/desired")).unwrap();
    std::fs::write(
        root.path.join("var/lib/acme/desired/chat.example.org-1a2b"),
        "old\n",
    )
    .unwrap();
    // The cron job is removed by install, which already ran: run it again.
    let install = cmdeploy(
        &["run", "--phase", "install", "--root", root.str()],
        &[("CHATMAIL_INI", "/nonexistent")],
    );
    assert!(install.ok);
    assert!(!root.path.join("etc/cron.d/acmetool").exists());
    deploy_and_check(&root, ACME, "chat.example.org");

    let link = root.path.join("var/lib/chatmail-tls/live/chat.example.org");
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        Path::new("../standin/chat.example.org")
    );
    assert!(link.join("STAND-IN").exists());
    let conf = text(&root, "/etc/nginx/nginx.conf");
    assert!(
        conf.contains("ssl_certificate /var/lib/chatmail-tls/live/chat.example.org/fullchain;")
    );
    assert!(conf.contains("proxy_pass http://127.0.0.1:402;"));
    assert!(conf.contains("return 301 dcaccount:https://chat.example.org/new;"));
    assert!(conf.contains("listen [::]:443;"));
    let desired = text(&root, "/var/lib/acme/desired/chat.example.org");
    assert!(
        desired.contains("- mta-sts.chat.example.org\n"),
        "{desired}"
    );
    assert!(
        !root
            .path
            .join("var/lib/acme/desired/chat.example.org-1a2b")
            .exists(),
        "old auto-named targets are removed"
    );
    let hook = root.path.join("etc/acme/hooks/nginx");
    assert_eq!(std::fs::metadata(&hook).unwrap().mode() & 0o777, 0o755);

    // acmetool obtained a certificate (here: a copy of the stand-in): its hook repoints the
    // link. systemctl fails in a root without systemd, after the link was switched.
    let live = root.path.join("var/lib/acme/live/chat.example.org");
    std::fs::create_dir_all(&live).unwrap();
    for name in ["fullchain", "privkey"] {
        std::fs::copy(link.join(name), live.join(name)).unwrap();
    }
    let unknown = root.chroot(&["/etc/acme/hooks/nginx", "challenge-http-start"]);
    assert_eq!(
        unknown.status.code(),
        Some(42),
        "other events are not the hook's"
    );
    root.chroot(&["/etc/acme/hooks/nginx", "live-updated"]);
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        Path::new("../../acme/live/chat.example.org")
    );
    nginx_accepts(&root);
    let dir = tempfile::tempdir().unwrap();
    let rerun = root_deploy(&root, &config_file(dir.path(), ACME), &[]);
    assert!(
        rerun.stdout.contains("nothing to change"),
        "{}",
        rerun.stdout
    );
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        Path::new("../../acme/live/chat.example.org"),
        "a later run keeps acmetool's certificate"
    );
}

#[test]
#[ignore = "slow: root, a Debian 12 rootfs"]
fn underscore_domain_rate_limits_account_creation() {
    let root = installed_root("web-underscore");
    deploy_and_check(&root, UNDERSCORE, "_chat.example.org");
    let conf = text(&root, "/etc/nginx/nginx.conf");
    assert!(conf.contains("limit_req zone=newaccount burst=5 nodelay;"));
    assert!(!conf.contains("dcaccount:"));
    assert!(!conf.contains("127.0.0.1:402"));
}

#[test]
#[ignore = "slow: root, a Debian 12 rootfs"]
fn ipv4_relay_without_ipv6_listens_on_ipv4_only() {
    let root = installed_root("web-ipv4");
    deploy_and_check(&root, IPV4, "10.77.0.2");
    let conf = text(&root, "/etc/nginx/nginx.conf");
    assert!(!conf.contains("[::]"), "{conf}");
}

#[test]
#[ignore = "slow: root, a Debian 12 rootfs"]
fn external_certificates_are_used_as_they_are() {
    let root = installed_root("web-external");
    std::fs::create_dir_all(root.path.join("etc/certs")).unwrap();
    make_certificate(
        &root,
        "/etc/certs/fullchain.pem",
        "/etc/certs/key.pem",
        "chat.example.org",
    );
    deploy_and_check(&root, EXTERNAL, "chat.example.org");
    let conf = text(&root, "/etc/nginx/nginx.conf");
    assert!(conf.contains("ssl_certificate /etc/certs/fullchain.pem;"));
}

#[test]
#[ignore = "slow: root, a Debian 12 rootfs"]
fn custom_www_folders_are_deployed_as_they_are_or_built_from_markdown() {
    let root = installed_root("web-custom");
    let dir = tempfile::tempdir().unwrap();
    let www = dir.path().join("www");
    std::fs::create_dir_all(www.join("img")).unwrap();
    std::fs::write(www.join("index.html"), "<h1>my relay</h1>\n").unwrap();
    std::fs::write(www.join("img/logo.png"), [0x89, b'P', b'N', b'G', 0, 1]).unwrap();
    std::fs::write(www.join("old.html"), "old\n").unwrap();
    let config = config_file(dir.path(), &format!("{UNDERSCORE}www_folder = www\n"));
    assert!(root_deploy(&root, &config, &[]).ok);
    assert_eq!(
        text(&root, "/var/www/html/index.html"),
        "<h1>my relay</h1>\n"
    );
    assert_eq!(
        root.read("/var/www/html/img/logo.png"),
        [0x89, b'P', b'N', b'G', 0, 1]
    );
    assert_eq!(owner(&root, "/var/www/html/img"), WWW_DATA);
    assert_eq!(owner(&root, "/var/www/html/img/logo.png"), WWW_DATA);
    assert!(!root.path.join("var/www/html/info.html").exists());

    // A page removed from the folder goes from the relay (cmdeploy put it there); a file
    // someone else put there stays.
    std::fs::write(root.path.join("var/www/html/operator.txt"), "mine").unwrap();
    std::fs::remove_file(www.join("old.html")).unwrap();
    let again = root_deploy(&root, &config, &[]);
    assert!(
        again
            .stdout
            .contains("website: remove /var/www/html/old.html (no longer declared)"),
        "{}",
        again.stdout
    );
    assert!(!root.path.join("var/www/html/old.html").exists());
    assert!(root.path.join("var/www/html/operator.txt").exists());
    let third = root_deploy(&root, &config, &[]);
    assert!(
        third.stdout.contains("nothing to change"),
        "{}",
        third.stdout
    );

    // A folder that does not exist means no website, as upstream: the pages go.
    let missing = config_file(
        dir.path(),
        &format!("{UNDERSCORE}www_folder = /nonexistent/www\n"),
    );
    let run = root_deploy(&root, &missing, &[]);
    assert!(run.ok, "{}", run.stderr);
    assert!(
        run.stderr.contains(
            "website: warning: www_folder: /nonexistent/www is not a directory: no web pages"
        ),
        "{}",
        run.stderr
    );
    assert!(!root.path.join("var/www/html/index.html").exists());
    assert!(root.path.join("var/www/html/operator.txt").exists());

    // A folder written in Markdown, as upstream's: built with the settings filled in.
    let site = dir.path().join("site");
    std::fs::create_dir_all(site.join("src/img")).unwrap();
    std::fs::write(
        site.join("src/page-layout.html"),
        "<title>{{ pagename }} at {{ config.mail_domain }}</title>\n{{ markdown_html }}\n",
    )
    .unwrap();
    std::fs::write(
        site.join("src/index.md"),
        "# Hello\n\nAddresses have {{ username_min_length }} characters; TLS: \
         {{ config.tls_cert_mode }}.\n",
    )
    .unwrap();
    std::fs::write(site.join("src/img/x.svg"), "<svg/>").unwrap();
    let markdown = config_file(dir.path(), &format!("{UNDERSCORE}www_folder = site\n"));
    let run = root_deploy(&root, &markdown, &[]);
    assert!(run.ok, "{}", run.stderr);
    assert_eq!(
        text(&root, "/var/www/html/index.html"),
        "<title>home at _chat.example.org</title>\n<h1>Hello</h1>\n\
         <p>Addresses have nine characters; TLS: self.</p>\n\n"
    );
    assert_eq!(text(&root, "/var/www/html/img/x.svg"), "<svg/>");
    assert!(!root.path.join("var/www/html/page-layout.html").exists());
    assert!(!root.path.join("var/www/html/index.md").exists());
    assert_eq!(
        qr_code(
            &root,
            "/var/www/html/qr-chatmail-invite-_chat.example.org.png"
        ),
        "DCACCOUNT:https://_chat.example.org/new"
    );
    assert!(!site.join("build").exists(), "the folder stays untouched");

    // An unresolved merge in a page stops the run before anything changes.
    std::fs::write(
        site.join("src/index.md"),
        "# Hello\n<<<<<<< ours\nA\n=======\nB\n>>>>>>> theirs\n",
    )
    .unwrap();
    let before = snapshot(&root.path);
    let run = root_deploy(&root, &markdown, &[]);
    assert!(!run.ok);
    assert!(
        run.stderr
            .contains("src/index.md:2: an unresolved merge conflict"),
        "{}",
        run.stderr
    );
    assert!(
        snapshot(&root.path) == before,
        "nothing on the target changed"
    );

    let disabled = config_file(dir.path(), &format!("{UNDERSCORE}www_folder = disabled\n"));
    let run = root_deploy(&root, &disabled, &[]);
    assert!(run.ok);
    assert!(
        run.stderr
            .contains("website: warning: www_folder = disabled"),
        "{}",
        run.stderr
    );
}
