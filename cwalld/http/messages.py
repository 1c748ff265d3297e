"""Error messages in the client's language: English as written in the code, Turkish when
``Accept-Language`` prefers it (the page sends its own choice). Codes never change: a program
reads the code, a person reads the message.

The Turkish side is a list of rules, each an English message (a regular expression, whole) and
its Turkish form, so a new message is one line here. A message no rule knows falls back to a
Turkish sentence for its code: a Turkish reader never gets English.
"""

from __future__ import annotations

import re

TR_RULES: list[tuple[str, str]] = [
    # field problems (422)
    (r"required( string)?", "gerekli"),
    (r"(\w[\w-]*) is required", r"\1 gerekli"),
    (r"must be a string", "metin olmalı"),
    (r"must be a string or null", "metin ya da null olmalı"),
    (r"must be an integer", "tam sayı olmalı"),
    (r"must be a number", "sayı olmalı"),
    (r"must be true or false", "true ya da false olmalı"),
    (r"must be an? (JSON )?object", "bir JSON nesnesi olmalı"),
    (r"must be an array", "dizi olmalı"),
    (r"must be (\d+) to (\d+) characters", r"\1-\2 karakter olmalı"),
    (r"must match (.+)", r"şu kalıba uymalı: \1"),
    (r"one of (.+)", r"şunlardan biri: \1"),
    (r"at least (\d+) characters", r"en az \1 karakter"),
    (r"at most (\d+) characters", r"en çok \1 karakter"),
    (r"a string of at most (\d+) characters", r"en çok \1 karakterlik bir metin"),
    (r"at least (-?[\d.]+)", r"en az \1"),
    (r"at most (-?[\d.]+)", r"en çok \1"),
    (r"an integer from (-?\d+) to (-?\d+)", r"\1 ile \2 arasında bir tam sayı"),
    (r"3 to 32 characters of a-z, 0-9 and _", "a-z, 0-9 ve _ ile 3-32 karakter"),
    (r"(\d+) to (\d+) characters; no space or invisible character at either end; no control, bidi or other "
     r"invisible format characters", r"\1-\2 karakter; başında ve sonunda boşluk ya da görünmez karakter, içinde "
                                     r"kontrol, yön ya da başka görünmez biçim karakteri olmadan"),
    (r"no space or invisible character at either end, and no control, .*",
     "başında ve sonunda boşluk ya da görünmez karakter, içinde kontrol, yön ya da başka görünmez biçim karakteri olmamalı"),
    (r"at most 64 characters, no control or invisible format characters",
     "en çok 64 karakter, kontrol ya da görünmez biçim karakteri olmadan"),
    (r"no control, bidi or other invisible format characters", "kontrol, yön ya da başka görünmez biçim karakteri olmadan"),
    (r"not a cursor this API returned", "bu API'nin verdiği bir imleç değil"),
    (r"not an event id this API sent", "bu API'nin gönderdiği bir olay kimliği değil"),
    (r"how far back: a number and s, m, h or d, or all", "ne kadar geriye: bir sayı ve s, m, h ya da d, veya all"),
    # whole messages
    (r"sign in first", "Önce giriş yapmalısın."),
    (r"wrong username or password", "Kullanıcı adı ya da parola yanlış."),
    (r"wrong password", "Parola yanlış."),
    (r"no such user", "Böyle bir kullanıcı yok."),
    (r"token is invalid or expired", "Oturumun geçersiz ya da süresi dolmuş; yeniden giriş yap."),
    (r"use 'Authorization: Bearer <token>'", "'Authorization: Bearer <token>' başlığını kullan."),
    (r"metrics need the metrics token", "Ölçümler için ölçüm jetonu gerekir."),
    (r"admins only", "Yalnızca yöneticiler."),
    (r"only the author or an admin can delete a confession", "Bir itirafı yalnızca yazarı ya da bir yönetici silebilir."),
    (r"a signed-in write from another site is refused", "Başka bir siteden gelen oturumlu yazma isteği reddedildi."),
    (r"send the cwall_csrf cookie's value in X-CSRF-Token", "cwall_csrf çerezinin değerini X-CSRF-Token başlığında gönder."),
    (r"no such confession|no confession with that id", "Böyle bir itiraf yok."),
    (r"no such published confession|no published confession with that id", "Yayında böyle bir itiraf yok."),
    (r"no hidden or rejected confession with that id", "Gizlenmiş ya da reddedilmiş böyle bir itiraf yok."),
    (r"no pending confession with that id", "Bekleyen böyle bir itiraf yok."),
    (r"no user '(.+)'", r"'\1' adında bir kullanıcı yok."),
    (r"no job '(.+)'; jobs: (.+)", r"'\1' adında bir iş yok; işler: \2"),
    (r"no such resource", "Böyle bir kaynak yok."),
    (r"username '(.+)' is taken", r"'\1' kullanıcı adı alınmış."),
    (r"the wall must keep at least one admin", "Duvarın en az bir yöneticisi kalmalı."),
    (r"at most (\d+) confessions a day", r"Günde en çok \1 itiraf yazılabilir."),
    (r"at most (\d+) exports a day", r"Günde en çok \1 kez veri dışa aktarılabilir."),
    (r"too many login attempts; try again later", "Çok fazla giriş denemesi; biraz sonra yeniden dene."),
    (r"too many new accounts from here; try again later", "Buradan çok fazla yeni hesap açıldı; daha sonra yeniden dene."),
    (r"too many open event streams from this address", "Bu adresten çok fazla canlı bağlantı açık."),
    (r"the database cannot take this now \((.+)\)", r"Veritabanı şu an bunu alamıyor (\1); biraz sonra yeniden dene."),
    (r"the request body did not arrive in time", "İstek gövdesi zamanında gelmedi."),
    (r"send the body as application/json", "Gövdeyi application/json olarak gönder."),
    (r"send the body as UTF-8 JSON \(charset=utf-8, or none\)", "Gövdeyi UTF-8 JSON olarak gönder (charset=utf-8 ya da hiç)."),
    (r"body is not valid JSON: (.+)", r"Gövde geçerli JSON değil: \1"),
    (r"request body too large", "İstek gövdesi çok büyük."),
    (r"(\w+) is not allowed here", r"Burada \1 kullanılamaz."),
    (r"the connection closed before the request was read", "Bağlantı, istek okunmadan kapandı."),
    (r"internal error", "İç hata."),
]
TR_CODE = {
    "invalid_json": "İstek geçerli JSON değil.", "unauthorized": "Önce giriş yapmalısın.", "forbidden": "Buna yetkin yok.",
    "not_found": "Bulunamadı.", "method_not_allowed": "Bu yöntem burada kullanılamaz.",
    "request_timeout": "İstek zamanında gelmedi.", "username_taken": "Bu kullanıcı adı alınmış.",
    "payload_too_large": "İstek çok büyük.", "unsupported_media_type": "Gövdeyi UTF-8 JSON olarak gönder.",
    "validation_error": "Gönderilen bilgilerde hata var.", "rate_limited": "Çok fazla istek; biraz sonra yeniden dene.",
    "daily_limit": "Bugünlük itiraf hakkın doldu.", "storage_unavailable": "Şu an kaydedilemiyor; biraz sonra yeniden dene.",
}
_RULES = [(re.compile(english), turkish) for english, turkish in TR_RULES]


def language(accept_language: str | None) -> str:
    """``tr`` or ``en``: whichever the header ranks higher; English when it names neither."""
    best, best_q = "en", -1.0
    for part in (accept_language or "").split(","):
        tag, _, params = part.strip().partition(";")
        primary = tag.strip().lower().split("-")[0]
        if primary not in ("tr", "en"):
            continue
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q > best_q:
            best, best_q = primary, q
    return best


def turkish(message: str, code: str | None = None) -> str:
    """``message`` in Turkish; for a message no rule knows, the sentence for ``code`` (a field's
    problem: "geçersiz değer")."""
    for rule, template in _RULES:
        if m := rule.fullmatch(message):
            return m.expand(template)
    return TR_CODE.get(code, "İstek yerine getirilemedi.") if code is not None else "geçersiz değer"
