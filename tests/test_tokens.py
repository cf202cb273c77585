"""Tokens that rotate without dropping a callback: comma-separated lists of CALLBACK_TOKEN,
CALLBACK_TOKEN_<PRODUCT> and ADMIN_TOKEN, all valid at once; a token shorter than 32
characters stops start-up; and TRUSTED_PROXIES=* is refused where it would open an
allowlist."""

from __future__ import annotations

import pytest

from core.settings import MIN_TOKEN_LENGTH, Settings
from tests.samples import verihubs_params, verihubs_url
from tests.support import ADMIN, ADMIN_TOKEN, CALLBACK_TOKEN, QUEUE, make_settings

OLD, NEW = CALLBACK_TOKEN, "new-callback-token-abcdefghijklmnopqrstu"
SMS = "sms-callback-token-abcdefghijklmnopqrstuv"
OTHER_ADMIN = "other-admin-token-abcdefghijklmnopqrstu"


def test_every_token_of_a_comma_separated_callback_token_is_accepted(app_client, redis):
    client = app_client(CALLBACK_TOKEN=f"{OLD}, {NEW}")
    for i, token in enumerate((OLD, NEW)):
        answer = client.get(verihubs_url(token=token), params=verihubs_params(f"r-{i}", 1))
        assert answer.status_code == 200, answer.text
    wrong = client.get(verihubs_url(token=NEW[:-1]), params=verihubs_params("r-x", 1))
    both = client.get(verihubs_url(token=f"{OLD},{NEW}"), params=verihubs_params("r-y", 1))
    assert (wrong.status_code, both.status_code) == (404, 404)
    assert redis.llen(QUEUE) == 2


def test_a_products_own_tokens_replace_callback_token_for_its_url_only(app_client):
    client = app_client(CALLBACK_TOKEN_SMS_OTP=SMS)
    sms, otp = verihubs_url("sms-otp", SMS), verihubs_url("whatsapp-otp", SMS)
    assert client.get(sms, params=verihubs_params("p-1", 1)).status_code == 200
    # The product's token is no good elsewhere, and the general one is not good for it.
    assert client.get(otp, params=verihubs_params("p-2", 1)).status_code == 404
    general = client.get(verihubs_url("sms-otp"), params=verihubs_params("p-3", 1))
    assert general.status_code == 404
    assert client.get(verihubs_url(), params=verihubs_params("p-4", 1)).status_code == 200


def test_with_only_a_products_token_the_other_products_stay_closed(app_client):
    client = app_client(CALLBACK_TOKEN="", CALLBACK_TOKEN_SMS_OTP=f"{SMS},{NEW}")
    for token in (SMS, NEW):
        answer = client.get(verihubs_url("sms-otp", token), params=verihubs_params(token, 1))
        assert answer.status_code == 200
    closed = client.get(verihubs_url("whatsapp-otp", SMS), params=verihubs_params("c", 1))
    assert closed.status_code == 404
    assert client.app.state.ctx.credentials.missing()[:2] == [
        "verihubs/whatsapp-otp",
        "verihubs/whatsapp-message",
    ]


def test_every_admin_token_of_the_list_is_accepted(app_client):
    client = app_client(ADMIN_TOKEN=f"{ADMIN_TOKEN},{OTHER_ADMIN}")
    for token in (ADMIN_TOKEN, OTHER_ADMIN):
        headers = {"Authorization": f"Bearer {token}"}
        assert client.get("/billing", headers=headers).status_code == 200
    assert client.get("/billing", headers={"Authorization": "Bearer x"}).status_code == 401
    assert client.get("/billing", headers=ADMIN).status_code == 200


@pytest.mark.parametrize(
    "variable", ["CALLBACK_TOKEN", "CALLBACK_TOKEN_WHATSAPP_OTP", "ADMIN_TOKEN", "METRICS_TOKEN"]
)
def test_a_token_shorter_than_32_characters_stops_start_up(variable):
    short = "s" * (MIN_TOKEN_LENGTH - 1)
    env = {"REDIS_URL": "redis://unused", variable: f"{'k' * MIN_TOKEN_LENGTH},{short}"}
    with pytest.raises(ValueError, match=f"{variable}: token 2 of 2 is shorter than 32") as info:
        Settings.from_env(env)
    assert short not in str(info.value)
    Settings.from_env({**env, variable: "k" * MIN_TOKEN_LENGTH})  # 32 is enough


def test_the_tests_and_make_run_use_tokens_long_enough():
    assert min(len(CALLBACK_TOKEN), len(ADMIN_TOKEN)) >= MIN_TOKEN_LENGTH


@pytest.mark.parametrize("trusted", ["*", "10.0.0.1, *", "0.0.0.0/0", "::/0"])
def test_trusting_every_proxy_is_refused_with_an_allowlist(redis_server, trusted):
    with pytest.raises(ValueError, match="TRUSTED_PROXIES"):
        make_settings(
            redis_server.url, TRUSTED_PROXIES=trusted, TWILIO_ALLOWED_NETWORKS="10.0.0.0/8"
        )
    # Without an allowlist it still starts (and warns: the logged address can be forged).
    assert make_settings(redis_server.url, TRUSTED_PROXIES=trusted).trusted_proxies
    proxies = make_settings(redis_server.url, TRUSTED_PROXIES="10.0.0.1, 10.1.0.0/16")
    assert proxies.trusted_proxies == ("10.0.0.1", "10.1.0.0/16")
