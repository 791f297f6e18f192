"""A throwaway service account and Google's auth servers, served on 127.0.0.1.

Google's auth servers are the one part of Google a test may stand in for: the key is a real RSA key
(made here), the token endpoint checks the signed JWT assertion with the key's public half and
answers with an access token, so credentials built from the key are really used end to end. The same
server answers google-auth's background "regional access boundary" lookup (IAM credentials'
``allowedLocations``), which would otherwise go to iamcredentials.googleapis.com.

It also stands in for the IAM credentials API (``generateAccessToken``: service-account
impersonation, with delegates, authorised by a token it issued) and for the Security Token Service
(``/sts``: the token exchange of an external-account / Workload Identity Federation configuration,
for a subject token it was given). Every token it issues is random and recorded, so that the leak
tests can look for each of them.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
import urllib.parse
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa


@dataclass
class ServiceAccount:
    private_key_pem: str
    public_key: rsa.RSAPublicKey
    keyfile: dict
    token: str

    @property
    def keyfile_json(self) -> str:
        return json.dumps(self.keyfile)

    def secrets(self) -> dict[str, str]:
        """Name -> text that must never show up anywhere: the key (whole and each line of its body,
        which survive any escaping of newlines), the access token, the raw key file JSON."""
        body = [line for line in self.private_key_pem.splitlines() if line and not line.startswith("-----")]
        found = {"private key (PEM)": self.private_key_pem, "access token": self.token,
                 "raw keyfile JSON": self.keyfile_json}
        found.update({f"private key line {i}": line for i, line in enumerate(body)})
        return found


def make_service_account(token_uri: str, project: str = "test-project") -> ServiceAccount:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    keyfile = {
        "type": "service_account",
        "project_id": project,
        "private_key_id": secrets.token_hex(20),
        "private_key": pem,
        "client_email": f"leak-test@{project}.iam.gserviceaccount.com",
        "client_id": "104242424242424242424",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
    }
    return ServiceAccount(pem, key.public_key(), keyfile, "ya29.leak-test-" + secrets.token_urlsafe(32))


@dataclass
class TokenEndpoint:
    """Answers ``grant_type=jwt-bearer`` requests whose assertion the account's key signed."""

    refuse: bool = False  # answer 400 invalid_grant, as Google does for a revoked key
    verified_assertions: int = 0
    rejected_assertions: int = 0
    boundary_lookups: int = 0  # allowedLocations requests carrying a token we issued
    accounts: list[ServiceAccount] = field(default_factory=list)
    scopes_requested: list[str] = field(default_factory=list)  # the "scope" claim of each verified assertion
    # IAM credentials: one entry per generateAccessToken answered ({"target", "delegates", "scope", "caller"})
    impersonations: list[dict] = field(default_factory=list)
    impersonated_tokens: dict[str, str] = field(default_factory=dict)  # account email -> token issued for it
    # STS: subject tokens it accepts (an external identity's token), and the access tokens it issued
    subject_tokens: list[str] = field(default_factory=list)
    exchanges: list[dict] = field(default_factory=list)  # {"scope", "audience", "subject_token_type"}
    sts_tokens: list[str] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def url(self) -> str:
        return f"{self.base_url}/token"

    def boundary_lookup_url(self, service_account_email: str) -> str:
        """Stands in for google-auth's ``get_service_account_rab_endpoint``."""
        return f"{self.base_url}/v1/projects/-/serviceAccounts/{service_account_email}/allowedLocations"

    def pool_boundary_lookup_url(self, project_number: str, pool_id: str) -> str:
        """Stands in for google-auth's ``get_workload_identity_pool_rab_endpoint``."""
        return f"{self.base_url}/v1/projects/{project_number}/locations/global/workloadIdentityPools/{pool_id}/allowedLocations"

    @property
    def iam_endpoint(self) -> str:
        """Stands in for ``google.auth.iam._IAM_ENDPOINT`` (``{}`` is the impersonated account)."""
        return f"{self.base_url}/v1/projects/-/serviceAccounts/{{}}:generateAccessToken"

    @property
    def sts_url(self) -> str:
        return f"{self.base_url}/sts"

    def issued_tokens(self) -> set[str]:
        return ({a.token for a in self.accounts} | set(self.impersonated_tokens.values()) | set(self.sts_tokens))

    def start(self) -> TokenEndpoint:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                path = urllib.parse.urlparse(self.path).path
                if path.endswith(":generateAccessToken"):
                    self.reply(*endpoint.impersonate(path, self.headers.get("Authorization", ""), body))
                elif path == "/sts":
                    self.reply(*endpoint.exchange(urllib.parse.parse_qs(body)))
                else:
                    form = urllib.parse.parse_qs(body)
                    self.reply(*endpoint.answer(form.get("assertion", [""])[0]))

            def do_GET(self):
                self.reply(*endpoint.boundary(self.path, self.headers.get("Authorization", "")))

            def reply(self, status: int, answer: dict) -> None:
                body = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def answer(self, assertion: str) -> tuple[int, dict]:
        account = next((a for a in self.accounts if _signed_by(assertion, a)), None)
        if account is None:
            self.rejected_assertions += 1
            return 400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
        self.verified_assertions += 1
        self.scopes_requested.append(json.loads(_b64(assertion.split(".")[1])).get("scope", ""))
        if self.refuse:
            return 400, {"error": "invalid_grant", "error_description": "Invalid grant: account not found"}
        return 200, {"access_token": account.token, "expires_in": 3600, "token_type": "Bearer"}


    def impersonate(self, path: str, authorization: str, body: str) -> tuple[int, dict]:
        """IAM credentials ``generateAccessToken`` for the account in ``path``, authorised by a token we issued."""
        email = urllib.parse.unquote(re.search(r"serviceAccounts/([^/:]+):generateAccessToken$", path).group(1))
        caller = authorization.removeprefix("Bearer ")
        if caller not in self.issued_tokens():
            return 401, {"error": {"code": 401, "status": "UNAUTHENTICATED"}}
        request = json.loads(body or "{}")
        self.impersonations.append({"target": email, "delegates": list(request.get("delegates") or []),
                                    "scope": list(request.get("scope") or []), "caller": caller})
        token = self.impersonated_tokens.setdefault(email, "ya29.impersonated-" + secrets.token_urlsafe(32))
        expiry = (datetime.now(timezone.utc) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        return 200, {"accessToken": token, "expireTime": expiry}

    def exchange(self, form: dict) -> tuple[int, dict]:
        """STS token exchange: a subject token we were given for an access token."""
        subject = form.get("subject_token", [""])[0]
        if form.get("grant_type", [""])[0] != "urn:ietf:params:oauth:grant-type:token-exchange" or \
                subject not in self.subject_tokens:
            return 400, {"error": "invalid_grant", "error_description": "The subject token is invalid."}
        self.exchanges.append({"scope": form.get("scope", [""])[0], "audience": form.get("audience", [""])[0],
                               "subject_token_type": form.get("subject_token_type", [""])[0]})
        token = "ya29.sts-" + secrets.token_urlsafe(32)
        self.sts_tokens.append(token)
        return 200, {"access_token": token, "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
                     "token_type": "Bearer", "expires_in": 3600}

    def boundary(self, path: str, authorization: str) -> tuple[int, dict]:
        tokens = {f"Bearer {t}" for t in self.issued_tokens()}
        if not path.endswith("/allowedLocations") or authorization not in tokens:
            return 401, {"error": {"code": 401, "status": "UNAUTHENTICATED"}}
        self.boundary_lookups += 1
        return 200, {"encodedLocations": "0x0", "locations": []}


def _signed_by(assertion: str, account: ServiceAccount) -> bool:
    try:
        header, payload, signature = assertion.split(".")
        account.public_key.verify(_b64(signature), f"{header}.{payload}".encode(), padding.PKCS1v15(),
                                  hashes.SHA256())
        return json.loads(_b64(payload))["iss"] == account.keyfile["client_email"]
    except Exception:
        return False


def _b64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
