#!/usr/bin/env python3
"""Create a self-contained LemonLDAP::NG OIDC-provider config in a temp dir (for
tests/oidc_login_lemonldap.rs).
usage: mkconf.py DIR PORT   (portal/issuer = http://127.0.0.1:PORT, or LLNG_ISSUER)
LLNG_REDIRECT: the client's redirect URI (default http://127.0.0.1:8480/auth/callback);
LLNG_POST_LOGOUT: its post-logout redirect URI (default: the redirect URI's origin + /)."""
import json, os, subprocess, sys
d, port = os.path.abspath(sys.argv[1]), int(sys.argv[2])
issuer = os.environ.get("LLNG_ISSUER", f"http://127.0.0.1:{port}")
redirect = os.environ.get("LLNG_REDIRECT", "http://127.0.0.1:8480/auth/callback")
post_logout = os.environ.get("LLNG_POST_LOGOUT", redirect.rsplit("/auth/", 1)[0] + "/")
for sub in ("conf", "sessions/lock", "psessions/lock", "oidc/lock", "cache", "notifications", "captcha"):
    os.makedirs(f"{d}/{sub}", exist_ok=True)
key = f"{d}/oidc-sig.key"
if not os.path.exists(key):
    subprocess.run(["openssl", "genrsa", "-out", key, "2048"], check=True, capture_output=True)
priv = open(key).read()
pub = subprocess.run(["openssl", "rsa", "-in", key, "-pubout"], check=True, capture_output=True, text=True).stdout

open(f"{d}/lemonldap-ng.ini", "w").write(f"""[all]
logLevel = {os.environ.get('LLNG_LOGLEVEL', 'notice')}
logger = Lemonldap::NG::Common::Logger::Std
userLogger = Lemonldap::NG::Common::Logger::Std
checkTime = 1

[configuration]
type = File
dirName = {d}/conf
prettyPrint = 1

[portal]
staticPrefix = /static
templateDir = /usr/share/lemonldap-ng/portal/templates
languages = en

[manager]
; needed only by lemonldap-ng-cli (it runs the Manager lib internally)
templateDir = /usr/share/lemonldap-ng/manager/htdocs/templates
languages = en
enabledModules = conf
""")

conf = {
    "cfgNum": 1, "cfgAuthor": "test-harness", "cfgDate": "1700000000", "cfgVersion": "2.16.1",
    "authentication": "Demo", "userDB": "Same", "passwordDB": "Demo", "registerDB": "Demo",
    "demoExportedVars": {"cn": "cn", "mail": "mail", "uid": "uid"},
    "portal": issuer + "/",
    "domain": os.environ.get("LLNG_DOMAIN", "127.0.0.1"),
    "cookieName": "lemonldap", "securedCookie": 0, "httpOnly": 1,
    "globalStorage": "Apache::Session::File",
    "globalStorageOptions": {"Directory": f"{d}/sessions", "LockDirectory": f"{d}/sessions/lock",
        "generateModule": "Lemonldap::NG::Common::Apache::Session::Generate::SHA256"},
    "persistentStorage": "Apache::Session::File",
    "persistentStorageOptions": {"Directory": f"{d}/psessions", "LockDirectory": f"{d}/psessions/lock"},
    "oidcStorage": "Apache::Session::File",
    "oidcStorageOptions": {"Directory": f"{d}/oidc", "LockDirectory": f"{d}/oidc/lock"},
    "localSessionStorage": "", "localSessionStorageOptions": {},
    "notification": 0, "loginHistoryEnabled": 0,
    "whatToTrace": "uid", "timeout": 72000,
    "locationRules": {}, "exportedHeaders": {}, "exportedVars": {}, "groups": {},
    "macros": {},
    "reloadUrls": {},
    "portalSkin": "bootstrap",
    # --- OpenID Connect provider ---
    "issuerDBOpenIDConnectActivation": 1,
    "oidcServiceMetaDataIssuer": issuer,
    "oidcServicePrivateKeySig": priv,
    "oidcServicePublicKeySig": pub,
    "oidcServiceKeyIdSig": "test-key-1",
    "oidcServiceAllowAuthorizationCodeFlow": 1,
    "oidcServiceIgnoreScopeForClaims": 0,   # release claims per scope
    "oidcRPMetaDataOptions": {
        "rie": {
            "oidcRPMetaDataOptionsClientID": "rie",
            "oidcRPMetaDataOptionsClientSecret": "rie-secret",
            "oidcRPMetaDataOptionsRedirectUris": redirect,
            "oidcRPMetaDataOptionsIDTokenSignAlg": "RS256",
            # userinfo answered as a JWT signed with the same key (as ProConnect does)
            "oidcRPMetaDataOptionsUserInfoSignAlg": os.environ.get("LLNG_USERINFO_SIGN", "RS256"),
            "oidcRPMetaDataOptionsBypassConsent": 1,
            "oidcRPMetaDataOptionsIDTokenForceClaims": 1,   # put claims in id_token too
            "oidcRPMetaDataOptionsUserIDAttr": "uid",       # sub = uid
            "oidcRPMetaDataOptionsRequirePKCE": 1,
            "oidcRPMetaDataOptionsPostLogoutRedirectUris": post_logout,
        }
    },
    "oidcRPMetaDataExportedVars": {
        "rie": {
            "email": "mail", "name": "cn", "preferred_username": "uid",
            "ministry": "ministry",
            "groups": "groups;string;always",
        }
    },
    # extra scope "ministry" releases claims "ministry groups"
    "oidcRPMetaDataOptionsExtraClaims": {"rie": {"ministry": "ministry groups"}},
    # per-RP macro computing the custom claim
    "oidcRPMetaDataMacros": {"rie": {"ministry": '$uid eq "dwho" ? "Time Lords" : "Earth"'}},
}
open(f"{d}/conf/lmConf-1.json", "w").write(json.dumps(conf, indent=1))
print(f"{d}/lemonldap-ng.ini")
