"""The staff pages' two languages, in one place.

Templates and views write English and wrap it in ``_()``; this table holds the
Swedish. A missing entry falls back to the English text (and a test lists
every ``_("...")`` in the templates that has no Swedish yet). Pages added by
other packages add their strings here.
"""

from __future__ import annotations

from flask import request, session

LANGUAGES = ("en", "sv")
SESSION_KEY = "staff_lang"

SV: dict[str, str] = {
    # Layout, navigation, sign-in
    "Consent service": "Samtyckestjänsten",
    "Skip to content": "Hoppa till innehållet",
    "Main navigation": "Huvudmeny",
    "Search contacts": "Sök kontakter",
    "Contacts": "Kontakter",
    "Imports": "Importer",
    "Campaigns": "Kampanjer",
    "Retention": "Gallring",
    "Webhooks": "Webhooks",
    "Users": "Användare",
    "API tokens": "API-nycklar",
    "Audit log": "Granskningslogg",
    "Administration": "Administration",
    "Signed in as": "Inloggad som",
    "Sign in": "Logga in",
    "Sign out": "Logga ut",
    "Email": "E-post",
    "Password": "Lösenord",
    "Staff sign-in": "Inloggning för personal",
    "The email or password is wrong, or the account is not active.": (
        "Fel e-post eller lösenord, eller så är kontot inte aktivt."
    ),
    "You are signed out.": "Du är utloggad.",
    "Please sign in to continue.": "Logga in för att fortsätta.",
    "Language": "Språk",
    "Change": "Byt",
    "Role": "Roll",
    "sales": "sälj",
    "marketing": "marknad",
    "admin": "admin",
    # Errors
    "Your role may not do this.": "Din roll får inte göra detta.",
    "Back to search": "Tillbaka till sökningen",
    "Page not found": "Sidan finns inte",
    "Something went wrong": "Något gick fel",
    # Search
    "Find a contact": "Hitta en kontakt",
    "Email, name or company": "E-post, namn eller företag",
    "Search": "Sök",
    "Matches the beginning of an email address, a name or a company name.": (
        "Söker på början av en e-postadress, ett namn eller ett företagsnamn."
    ),
    "An id from another system is found as system:id, e.g. hubspot:1234.": (
        "Ett id från ett annat system hittas som system:id, t.ex. hubspot:1234."
    ),
    "No contact matches": "Ingen kontakt matchar",
    "Results": "Träffar",
    "Showing the first %(n)s matches; type more to narrow the search.": (
        "Visar de första %(n)s träffarna; skriv mer för att begränsa sökningen."
    ),
    "Name": "Namn",
    "Company": "Företag",
    "Country": "Land",
    # Contact page
    "Contact": "Kontakt",
    "May we market to this contact?": "Får vi marknadsföra till kontakten?",
    "Allowed": "Tillåtet",
    "Not allowed": "Inte tillåtet",
    "Topic": "Ämne",
    "Channel": "Kanal",
    "Basis": "Rättslig grund",
    "Since": "Sedan",
    "Evidence": "Underlag",
    "Why": "Varför",
    "consent": "samtycke",
    "legitimate_interest": "berättigat intresse",
    "Phone": "Telefon",
    "Language of the contact": "Kontaktens språk",
    "Last interaction": "Senaste kontakt",
    "Data will be purged on": "Uppgifterna gallras",
    "Not computed yet": "Inte beräknat ännu",
    "No retention rule applies": "Ingen gallringsregel gäller",
    "A run on": "En körning den",
    "Show": "Visa",
    "would delete": "skulle radera",
    "would anonymise": "skulle avidentifiera",
    "contacts": "kontakter",
    "activities": "aktiviteter",
    "skipped": "hoppar över",
    "Due since": "Gallras sedan",
    "and more": "med flera",
    "Held elsewhere": "Hanteras i andra system",
    "Held elsewhere: purges to check": "Hanteras i andra system: gallring att bocka av",
    "Rule": "Regel",
    "Held in": "Finns i",
    "Purged by": "Gallras av",
    "Due through": "Gallras till och med",
    "Done through": "Klart till och med",
    "Mark done": "Markera som klart",
    "Marked done.": "Markerat som klart.",
    "Retention runs": "Gallringskörningar",
    "As of": "Per",
    "Started": "Startad",
    "Ended": "Avslutad",
    "Started by": "Startad av",
    "Counts": "Antal",
    "No runs yet.": "Inga körningar ännu.",
    "Nothing is due.": "Inget ska gallras.",
    "Connected systems told": "Anslutna system som meddelas",
    "Each purge and erasure is a tombstone in the change feed (contact id and external ids), read by these systems.": "Varje gallring och radering blir en gravsten i ändringsflödet (kontakt-id och externa id:n), som de här systemen läser.",
    "System": "System",
    "every item": "varje händelse",
    "No external ids among the contacts due, and no webhook endpoint.": "Inga externa id:n bland kontakterna som gallras, och ingen webhook-mottagare.",
    "not while": "inte så länge:",
    "Processing restricted since": "Behandlingen begränsad sedan",
    "Legal hold": "Bevarandeplikt",
    "External ids": "Externa id",
    "Source notice (GDPR art. 14) sent": "Information om källan (GDPR art. 14) skickad",
    "Source notice (GDPR art. 14) owed since": "Information om källan (GDPR art. 14) ska skickas, sedan",
    "None": "Ingen",
    "Customer since": "Kund sedan",
    "Consent ledger": "Samtyckeshistorik",
    "Activities": "Aktiviteter",
    "No activities yet.": "Inga aktiviteter ännu.",
    "No events yet.": "Inga händelser ännu.",
    "Recorded by": "Registrerad av",
    "Received via": "Mottagen via",
    "Form": "Formulär",
    "Policy version": "Policyversion",
    "Wording hash": "Hash för texten",
    "IP address": "IP-adress",
    "Source": "Källa",
    "Note": "Anteckning",
    "at": "kl.",
    "all topics": "alla ämnen",
    "all channels": "alla kanaler",
    # Reasons (consent.policy.Reason)
    "reason.unknown_contact": "okänd kontakt",
    "reason.suppressed": "spärrad adress",
    "reason.objection": "invändning",
    "reason.restricted": "begränsad behandling",
    "reason.undeliverable": "adressen studsar",
    "reason.unsubscribed": "avregistrerad",
    "reason.consent": "samtycke",
    "reason.customer": "kund",
    "reason.industry_list": "branschregister",
    "reason.pending_confirmation": "väntar på bekräftelse",
    "reason.no_basis": "ingen rättslig grund",
    # Actions
    "Actions": "Åtgärder",
    "Log an activity": "Logga en aktivitet",
    "Kind": "Typ",
    "When (UTC)": "När (UTC)",
    "Save activity": "Spara aktiviteten",
    "Activity saved.": "Aktiviteten är sparad.",
    "Record an objection": "Registrera en invändning",
    "The person objects to direct marketing. This stops all marketing at once.": (
        "Personen invänder mot direktmarknadsföring. Det stoppar all marknadsföring direkt."
    ),
    "Which channels": "Vilka kanaler",
    "Record objection": "Registrera invändningen",
    "Objection recorded.": "Invändningen är registrerad.",
    "Record a withdrawal": "Registrera ett återkallande",
    (
        "The person asked us to stop a topic or a channel, such as the newsletter. It takes "
        "effect at once; other topics and channels keep their basis."
    ): (
        "Personen bad oss sluta med ett ämne eller en kanal, till exempel nyhetsbrevet. "
        "Det gäller direkt; andra ämnen och kanaler behåller sin grund."
    ),
    "Record withdrawal": "Registrera återkallandet",
    "Withdrawal recorded.": "Återkallandet är registrerat.",
    "Re-permission under policy version": "Förnyat samtycke enligt policyversion",
    (
        "Version %(version)s is a major change. Consents given under an earlier version still "
        "stand; you may ask those people to confirm under the new version. Only their click "
        "records consent again."
    ): (
        "Version %(version)s är en större ändring. Samtycken som lämnats enligt en tidigare "
        "version gäller fortfarande; du kan be dessa personer bekräfta enligt den nya versionen. "
        "Bara deras klick registrerar samtycket på nytt."
    ),
    "Contacts with a consent given under an earlier version:": (
        "Kontakter med samtycke enligt en tidigare version:"
    ),
    "Yes, send the re-permission request to these contacts": (
        "Ja, skicka begäran om förnyat samtycke till dessa kontakter"
    ),
    "Send re-permission request": "Skicka begäran om förnyat samtycke",
    "Re-permission requests are on their way.": "Begäran om förnyat samtycke skickas.",
    "Restrict processing (GDPR art. 18)": "Begränsa behandlingen (GDPR art. 18)",
    "Restrict": "Begränsa",
    "Lift the restriction": "Häv begränsningen",
    "Restriction recorded.": "Begränsningen är registrerad.",
    "Restriction lifted.": "Begränsningen är hävd.",
    "Set a legal hold": "Sätt bevarandeplikt",
    "Reason": "Skäl",
    "Set hold": "Sätt bevarandeplikt",
    "Lift the legal hold": "Häv bevarandeplikten",
    "Legal hold set.": "Bevarandeplikten är satt.",
    "Legal hold lifted.": "Bevarandeplikten är hävd.",
    "Export and erasure": "Export och radering",
    "Export the data": "Exportera uppgifterna",
    "Erase the contact": "Radera kontakten",
    "Not available yet.": "Inte tillgängligt ännu.",
    "phone": "telefon",
    "letter": "brev",
    "email": "e-post",
    "meeting": "möte",
    "web": "webb",
    "other": "annat",
    # Admin: users, tokens, audit
    "Staff users": "Personalkonton",
    "Create a user": "Skapa en användare",
    "Create user": "Skapa användaren",
    "User created.": "Användaren är skapad.",
    "Active": "Aktiv",
    "Inactive": "Inaktiv",
    "Status": "Status",
    "Deactivate": "Inaktivera",
    "Reactivate": "Aktivera igen",
    "Change role": "Byt roll",
    "User updated.": "Användaren är uppdaterad.",
    "At least 10 characters.": "Minst 10 tecken.",
    "Create a token": "Skapa en nyckel",
    "Create token": "Skapa nyckeln",
    "Copy this token now; it is not shown again.": ("Kopiera nyckeln nu; den visas inte igen."),
    "Created": "Skapad",
    "Last used": "Senast använd",
    "Revoked": "Återkallad",
    "Revoke": "Återkalla",
    "Token revoked.": "Nyckeln är återkallad.",
    "Never": "Aldrig",
    "When": "När",
    "Who": "Vem",
    "What": "Vad",
    "Detail": "Detalj",
    "Older entries": "Äldre poster",
    "No entries.": "Inga poster.",
    # Ledger event kinds (consent.models.EventKind)
    "event.requested": "begärt (väntar på bekräftelse)",
    "event.confirmed": "samtycke bekräftat",
    "event.withdrawn": "samtycke återkallat",
    "event.unsubscribed": "avregistrerad",
    "event.objected": "invändning",
    "event.objection_lifted": "invändning hävd",
    "event.basis_granted": "rättslig grund registrerad",
    "event.basis_ended": "rättslig grund upphörd",
    "event.suppressed": "spärrad",
    "event.unsuppressed": "spärr hävd",
    "event.restricted": "behandling begränsad",
    "event.unrestricted": "begränsning hävd",
    "event.undeliverable": "adressen studsar",
    "event.bounced": "tillfällig studs",
    "event.deliverable": "adressen fungerar igen",
    # Returned mail (consent.deliverability), on the contact page
    "spam complaint": "spamanmälan",
    "returned mail": "studsat mejl",
    "Address fixed": "Adressen rättad",
    "Mail to this address bounced. Once you know it works again (a typo corrected, the mailbox restored), email may be sent to it again.": (
        "Mejl till adressen har studsat. När du vet att den fungerar igen (ett stavfel rättat, "
        "brevlådan återställd) får mejl skickas till den igen."
    ),
    "The address works again": "Adressen fungerar igen",
    "The address may receive email again.": "Adressen får ta emot mejl igen.",
    "Email bounces since": "Mejl studsar sedan",
    "event.created_while_suppressed": "skapad trots spärr",
    # Activity kinds (crm.models.ActivityKind)
    "activity.call": "samtal",
    "activity.email": "e-post",
    "activity.meeting": "möte",
    "activity.visit": "besök",
    "activity.order": "order",
    "activity.support_case": "supportärende",
    "activity.form_submission": "formulär",
    "activity.event_attendance": "evenemang",
    "activity.marketing_email": "marknadsföringsmejl",
    # Campaigns (mailing/staff_pages.py)
    "A send now would reach": "Ett utskick nu skulle nå",
    "All campaigns": "Alla kampanjer",
    "Audience": "Mottagare",
    "Audience now": "Mottagare just nu",
    "Blocked": "Stoppade",
    "Blocked right before sending": "Stoppade strax före utskick",
    "Erased since": "Raderade sedan dess",
    "Failed": "Misslyckade",
    "Came back": "Kom tillbaka",
    "Share of messages tried": "Andel av försökta meddelanden",
    "Hard bounces": "Hårda studsar",
    "Soft bounces": "Mjuka studsar",
    "Spam complaints": "Spamanmälningar",
    "In English": "På engelska",
    "In Swedish": "På svenska",
    "New campaign": "Ny kampanj",
    "No campaigns yet.": "Inga kampanjer ännu.",
    "Not allowed, by reason": "Inte tillåtna, per skäl",
    "Preview the audience": "Förhandsgranska mottagarna",
    "Save as draft": "Spara som utkast",
    "Send": "Skicka",
    "Send again": "Skicka igen",
    "Sent": "Skickade",
    "Subject": "Ämnesrad",
    "Text": "Text",
    "Texts": "Texter",
    "The unsubscribe link and the reason the person receives the email are added below the text.": (
        "Avregistreringslänken och skälet till att personen får mejlet läggs till under texten."
    ),
    "This page updates every few seconds while the campaign is sending.": (
        "Sidan uppdateras med några sekunders mellanrum medan kampanjen skickas."
    ),
    "Waiting": "Väntar",
    "Yes, send this campaign to everyone allowed now. Each contact receives it at most once.": (
        "Ja, skicka kampanjen till alla som är tillåtna nu. Varje kontakt får den högst en gång."
    ),
    "draft": "utkast",
    "sending": "skickas",
    "sent": "skickad",
    "Campaign saved as a draft.": "Kampanjen är sparad som utkast.",
    "The campaign is on its way.": "Kampanjen är på väg.",
    # Imports (consent/staff_pages.py)
    "All imports": "Alla importer",
    "An industry list (legitimate interest; the first email carries the notice of where the address came from)": (
        "Ett branschregister (berättigat intresse; första mejlet talar om var adressen kommer ifrån)"
    ),
    "Choose a CSV file to import.": "Välj en CSV-fil att importera.",
    "Contact persons at customers (legitimate interest)": (
        "Kontaktpersoner hos kunder (berättigat intresse)"
    ),
    "Error": "Fel",
    "File": "Fil",
    "Finished": "Klar",
    "Import": "Importera",
    "Import a CSV file": "Importera en CSV-fil",
    "Columns": "Kolumner",
    "Recognised column names": "Kända kolumnnamn",
    "Recognised column names (email, name, company, country ...)": (
        "Kända kolumnnamn (e-post, namn, företag, land ...)"
    ),
    "A %(vendor)s contacts export": "En kontaktexport från %(vendor)s",
    "Or map the columns yourself": "Eller ange själv vilken kolumn som är vad",
    "Mapping (JSON: header to field)": "Kolumner (JSON: rubrik till fält)",
    "Fields: email, name, first_name, last_name, company, org_number, country, language, last_interaction, last_interaction_kind, external_id:<system>. Only the columns named are read.": (
        "Fält: email, name, first_name, last_name, company, org_number, country, language, "
        "last_interaction, last_interaction_kind, external_id:<system>. Bara de namngivna "
        "kolumnerna läses."
    ),
    "This file looks like a %(vendor)s export: choose that preset under Columns to keep its record ids and read its name and country columns.": (
        "Filen ser ut som en export från %(vendor)s: välj den under Kolumner för att behålla "
        "dess id:n och läsa dess namn- och landkolumner."
    ),
    "File received: the import runs in the background.": (
        "Filen är mottagen: importen körs i bakgrunden."
    ),
    "Progress": "Förlopp",
    "The file is stored and waits for the worker.": "Filen är sparad och väntar på att importeras.",
    "%(done)s of about %(total)s rows read.": "%(done)s av omkring %(total)s rader lästa.",
    "This page reloads itself until the import is done; you may also leave it and come back from the list of imports.": (
        "Sidan laddas om tills importen är klar; du kan också lämna den och komma tillbaka "
        "via listan över importer."
    ),
    "Import batch": "Import",
    "New": "Nya",
    "Later rejected rows": "Senare avvisade rader",
    "Latest imports": "Senaste importerna",
    "No imports yet.": "Inga importer ännu.",
    "No later rejected rows.": "Inga senare avvisade rader.",
    "No row was rejected.": "Ingen rad avvisades.",
    "Rejected": "Avvisade",
    "Rejected rows": "Avvisade rader",
    "Report": "Rapport",
    "Row": "Rad",
    "Row numbers as a spreadsheet shows them (the header is row 1). The reasons never repeat what the row holds.": (
        "Radnummer som i ett kalkylark (rubrikraden är rad 1). Skälen upprepar aldrig radens innehåll."
    ),
    "Rows": "Rader",
    "Skipped: suppressed": "Hoppade över: spärrade",
    "Source of the list": "Listans källa",
    "The file is stored and imported in the background: the next page shows its progress and then its report.": (
        "Filen sparas och importeras i bakgrunden: nästa sida visar förloppet och sedan rapporten."
    ),
    "UTF-8, comma or semicolon separated, with a header row naming an email column; name, company, organisation number, country, language and last interaction date are read when present. Consent cannot be imported: people give it through the signup form.": (
        "UTF-8, separerad med komma eller semikolon, med en rubrikrad som har en e-postkolumn; "
        "namn, företag, organisationsnummer, land, språk och senaste kontakt läses när de finns. "
        "Samtycke kan inte importeras: det ger personen själv via anmälningsformuläret."
    ),
    "Unchanged": "Oförändrade",
    "Updated": "Uppdaterade",
    "e.g. the partner or fair it came from": "t.ex. partnern eller mässan den kommer från",
    "queued": "i kö",
    "running": "pågår",
    "done": "klar",
    "failed": "misslyckades",
    "The page is not valid.": "Sidan är inte giltig.",
    # Webhooks (consent/staff_pages.py, issue 20)
    "Webhook": "Webhook",
    "Receiver": "Mottagare",
    "Event types": "Händelsetyper",
    "Event type": "Händelsetyp",
    "All event types": "Alla händelsetyper",
    "Registered": "Registrerad",
    "No webhooks are registered.": "Inga webhooks är registrerade.",
    "Receivers are posted every change of the change feed they subscribe to, signed in the "
    "Standard Webhooks format. Register one with the API (POST /api/v1/webhooks); its secret "
    "is shown only then.": (
        "Mottagare får varje ändring i ändringsflödet som de prenumererar på, signerad i "
        "formatet Standard Webhooks. Registrera en med API:t (POST /api/v1/webhooks); dess "
        "hemlighet visas bara då."
    ),
    "Post changes again": "Skicka ändringar igen",
    "Every change of the subscribed types after a change id, or since a time (UTC), is posted "
    "again in the order of the feed, with the same webhook-id.": (
        "Varje ändring av de prenumererade typerna efter ett ändrings-id, eller sedan en "
        "tidpunkt (UTC), skickas igen i flödets ordning, med samma webhook-id."
    ),
    "After change id": "Efter ändrings-id",
    "Or since (UTC)": "Eller sedan (UTC)",
    "Post again": "Skicka igen",
    "Deliveries": "Leveranser",
    "All": "Alla",
    "Change id": "Ändrings-id",
    "Attempts": "Försök",
    "Last error": "Senaste fel",
    "Next try": "Nästa försök",
    "Written": "Skriven",
    "replays": "skickar om",
    "Older deliveries": "Äldre leveranser",
    "No deliveries.": "Inga leveranser.",
    "delivery.pending": "väntar",
    "delivery.delivered": "levererad",
    "delivery.failed": "misslyckad",
    "delivery.cancelled": "avbruten",
    "The delivery will be posted again.": "Leveransen skickas igen.",
    "The changes will be posted again.": "Ändringarna skickas igen.",
    # Rights from the contact page, the privacy-request inbox, the dpo role (issue 19)
    "dpo": "dataskyddsombud",
    "Browser": "Webbläsare",
    "Page": "Sida",
    "Privacy requests": "Integritetsärenden",
    "Open privacy requests": "Öppna integritetsärenden",
    "due": "senast",
    "The person asked via": "Personen bad om det via",
    "Not a request from the person": "Inte en begäran från personen",
    "Correct the data (GDPR art. 16)": "Rätta uppgifterna (GDPR art. 16)",
    "Save the correction": "Spara rättelsen",
    "Contact corrected.": "Kontakten är rättad.",
    "Export the data (GDPR art. 15, 20)": "Exportera uppgifterna (GDPR art. 15, 20)",
    "Everything held about the person, as a JSON file to give them.": (
        "Allt vi har om personen, som en JSON-fil att lämna till personen."
    ),
    "Erase the contact (GDPR art. 17)": "Radera kontakten (GDPR art. 17)",
    "Back to the contact": "Tillbaka till kontakten",
    "What erasure does": "Vad radering gör",
    "The contact, its activities, its consent ledger and its decisions are deleted. This cannot be undone.": (
        "Kontakten, dess aktiviteter, dess samtyckeslogg och dess beslut raderas. "
        "Det går inte att ångra."
    ),
    "If the person ever objected or unsubscribed from everything, a keyed hash of the address stays on the suppression list, so that they are never marketed to again.": (
        "Om personen någon gång invänt eller avregistrerat sig från allt stannar en nyckelhashad "
        "adress på spärrlistan, så att personen aldrig får marknadsföring igen."
    ),
    "The privacy requests of the contact stay, without any personal data, as proof of when they were answered.": (
        "Kontaktens integritetsärenden finns kvar, utan personuppgifter, som bevis på när de "
        "besvarades."
    ),
    "This answers the open requests:": "Detta besvarar de öppna ärendena:",
    "Erasure is refused while a legal hold is set:": (
        "Radering nekas så länge bevarandeplikt gäller:"
    ),
    "Yes, erase the contact": "Ja, radera kontakten",
    "Contact erased.": "Kontakten är raderad.",
    "Contact erased. The suppression hash is kept.": (
        "Kontakten är raderad. Spärrhashen finns kvar."
    ),
    "Each request must be answered within one month of its verification; where necessary the deadline can be extended once by two further months, with the reason (GDPR art. 12(3)).": (
        "Varje ärende ska besvaras inom en månad från verifieringen; vid behov kan tiden "
        "förlängas en gång med två månader, med skälet (GDPR art. 12.3)."
    ),
    "Filter": "Filter",
    "show.open": "öppna",
    "show.overdue": "försenade",
    "show.closed": "besvarade",
    "show.all": "alla",
    "Received": "Mottaget",
    "Verified": "Verifierat",
    "Deadline": "Senast",
    "Answered": "Besvarat",
    "via": "via",
    "Overdue": "Försenat",
    "extended from": "förlängt från",
    "erased": "raderad",
    "Reason for two more months": "Skäl för två månader till",
    "Extend the deadline": "Förläng tiden",
    "Reason for the refusal (no personal data)": "Skäl för avslaget (inga personuppgifter)",
    "Refuse the request": "Avslå ärendet",
    "No requests.": "Inga ärenden.",
    "Deadline extended.": "Tiden är förlängd.",
    "Request refused.": "Ärendet är avslaget.",
    "request.access": "registerutdrag",
    "request.erasure": "radering",
    "request.rectification": "rättelse",
    "request.restriction": "begränsning",
    "status.pending_verification": "väntar på verifiering",
    "status.awaiting_admin": "väntar på admin",
    "status.verified": "verifierat",
    "status.completed": "besvarat",
    "status.refused": "avslaget",
    "outcome.exported": "exporterat",
    "outcome.erased": "raderat",
    "outcome.restricted": "begränsat",
    "outcome.rectified": "rättat",
    "outcome.refused": "avslaget",
    # One's own account: password, reset links, two-factor sign-in
    "Your account": "Ditt konto",
    "Change your password": "Byt lösenord",
    "Current password": "Nuvarande lösenord",
    "New password": "Nytt lösenord",
    "New password again": "Nytt lösenord igen",
    "Change password": "Byt lösenord",
    "Your other sessions end.": "Dina andra inloggningar avslutas.",
    "Your password is changed; your other sessions have ended.": (
        "Lösenordet är bytt; dina andra inloggningar har avslutats."
    ),
    "Two-factor": "Tvåfaktor",
    "Two-factor sign-in": "Tvåfaktorsinloggning",
    "Two-factor sign-in is on.": "Tvåfaktorsinloggning är på.",
    "On": "På",
    "Off": "Av",
    "Remove": "Ta bort",
    "On: you sign in with your password and a code from your authenticator app.": (
        "På: du loggar in med lösenord och en kod från din autentiseringsapp."
    ),
    "Off: a password alone signs you in.": "Av: enbart lösenordet loggar in dig.",
    "Lost the phone? An admin can remove the second factor; you then enrol again.": (
        "Tappat telefonen? En admin kan ta bort den andra faktorn; du registrerar sedan en ny."
    ),
    "Turn on two-factor sign-in": "Slå på tvåfaktorsinloggning",
    "Your role signs in with a second factor. Set it up now to continue.": (
        "Din roll loggar in med en andra faktor. Ställ in den nu för att fortsätta."
    ),
    "You already have a second factor; a new one replaces it.": (
        "Du har redan en andra faktor; en ny ersätter den."
    ),
    "Add an account to an authenticator app (TOTP) with this key:": (
        "Lägg till ett konto i en autentiseringsapp (TOTP) med den här nyckeln:"
    ),
    "Or open this address in the app:": "Eller öppna den här adressen i appen:",
    "Type the six-digit code the app shows.": "Skriv den sexsiffriga kod som appen visar.",
    "Code": "Kod",
    "Turn on": "Slå på",
    "The code from your authenticator app": "Koden från din autentiseringsapp",
    "The code is wrong or was already used. Try the next code.": (
        "Koden är fel eller redan använd. Prova nästa kod."
    ),
    "Too many attempts. Wait a few minutes and try again.": (
        "För många försök. Vänta några minuter och försök igen."
    ),
    "Forgot your password?": "Glömt lösenordet?",
    "Send a link": "Skicka en länk",
    "Back to sign-in": "Tillbaka till inloggningen",
    "Enter the email of your staff account.": "Ange e-postadressen till ditt personalkonto.",
    "If an active staff account has this address, a link to choose a new password is on its way to it.": (
        "Om ett aktivt personalkonto har den här adressen är en länk för att välja nytt "
        "lösenord på väg dit."
    ),
    "Choose a new password": "Välj ett nytt lösenord",
    "Set the password": "Spara lösenordet",
    "Ask for a new link": "Be om en ny länk",
    "Your new password is set. Sign in with it.": (
        "Ditt nya lösenord är sparat. Logga in med det."
    ),
    "This password-reset link is not valid: it may be used, expired or incomplete. "
    "Ask an admin for a new one.": (
        "Länken för att byta lösenord gäller inte: den kan vara använd, för gammal eller "
        "ofullständig. Be en admin om en ny."
    ),
    "Send a password-reset link": "Skicka en länk för nytt lösenord",
    "A password-reset link is on its way to the user.": (
        "En länk för nytt lösenord är på väg till användaren."
    ),
    "The user's second factor is removed; their sessions have ended.": (
        "Användarens andra faktor är borttagen; användarens inloggningar har avslutats."
    ),
    "Expires": "Går ut",
    "Expires after (days)": "Går ut efter (dagar)",
    "Empty: valid until revoked.": "Tomt: gäller tills den återkallas.",
    # --- dashboard (issue 23 item 3) ---
    "Dashboard": "Översikt",
    "Counted at": "Räknat",
    "counted again every %(minutes)s minutes": "räknas om var %(minutes)s:e minut",
    "Not counted yet: the scheduler counts this section within %(minutes)s minutes.": "Inte räknat än: schemaläggaren räknar det här avsnittet inom %(minutes)s minuter.",
    "Counts only: no person is shown. The numbers of each chart are in the table below it.": "Bara antal: ingen person visas. Siffrorna i varje diagram står i tabellen under det.",
    "Reachable audience": "Nåbar målgrupp",
    "Bar chart of the reachable audience per topic and channel and why the rest are not reachable; the numbers are in the table below.": "Stapeldiagram över den nåbara målgruppen per ämne och kanal och varför resten inte kan nås; siffrorna står i tabellen nedan.",
    "Contacts per topic and channel, by the reason of the decision": "Kontakter per ämne och kanal, efter beslutets skäl",
    "Reachable": "Nåbara",
    "Reachable: allowed by consent, as the contact of a customer or from an industry list.": "Nåbara: tillåtna genom samtycke, som kontakt hos en kund eller från ett branschregister.",
    "Consents and opt-outs per week": "Samtycken och avregistreringar per vecka",
    "Bar chart of consents requested and confirmed, unsubscribes and objections per week; the numbers are in the table below.": "Stapeldiagram över begärda och bekräftade samtycken, avregistreringar och invändningar per vecka; siffrorna står i tabellen nedan.",
    "Ledger events per week (weeks start on Monday, UTC)": "Händelser i samtyckesloggen per vecka (veckan börjar på måndag, UTC)",
    "Week of": "Veckan från",
    "Consents requested": "Begärda samtycken",
    "Consents confirmed": "Bekräftade samtycken",
    "Confirmation rate": "Andel bekräftade",
    "Unsubscribes": "Avregistreringar",
    "Objections": "Invändningar",
    "Confirmation rate: consents confirmed in a week per consent requested in the same week. Unsubscribes include withdrawals staff recorded.": "Andel bekräftade: samtycken bekräftade under en vecka per samtycke begärt samma vecka. Avregistreringar omfattar återkallelser som personalen registrerat.",
    "Bar chart of the messages sent, bounced, complaints, unsubscribes and objections of each campaign; the numbers are in the table below.": "Stapeldiagram över skickade meddelanden, studsar, klagomål, avregistreringar och invändningar per kampanj; siffrorna står i tabellen nedan.",
    "Outcomes per campaign, attributed through the message id in each link": "Utfall per kampanj, kopplade via meddelande-id:t i varje länk",
    "Campaign": "Kampanj",
    "Sent at": "Skickad",
    "Bounced": "Studsade",
    "Complaints": "Klagomål",
    "No campaign has been sent yet.": "Ingen kampanj har skickats än.",
    "Due for purge": "Att gallra",
    "Bar chart of the contacts and activities the retention rules purge in each of the next 24 months; the numbers are in the table below.": "Stapeldiagram över kontakter och aktiviteter som gallringsreglerna tar bort under var och en av de kommande 24 månaderna; siffrorna står i tabellen nedan.",
    "Contacts and activities due for purge per month under the current retention rules": "Kontakter och aktiviteter att gallra per månad enligt de nuvarande gallringsreglerna",
    "Month": "Månad",
    "due now": "förfallet nu",
    "As if nothing changed meanwhile: a new interaction postpones a purge, a legal hold stops it.": "Som om inget ändrades under tiden: en ny interaktion skjuter upp en gallring, bevarandeplikt stoppar den.",
    "Bar chart of privacy requests open, overdue and closed; the numbers are in the table below.": "Stapeldiagram över öppna, försenade och avslutade integritetsärenden; siffrorna står i tabellen nedan.",
    "Privacy requests now": "Integritetsärenden nu",
    "Open": "Öppna",
    "Closed": "Avslutade",
    "Overdue: open past the deadline of one month from verification (or the extended one).": "Försenade: öppna efter tidsfristen på en månad från verifieringen (eller den förlängda).",
    "Reachable audience per topic and channel": "Nåbar målgrupp per ämne och kanal",
    "Outcomes per campaign": "Utfall per kampanj",
    "Due for purge per month": "Att gallra per månad",
    "Requests": "Ärenden",
}

# English labels where the key's readable part is not clear enough.
EN: dict[str, str] = {
    "event.undeliverable": "address bounces (undeliverable)",
    "event.bounced": "soft bounce",
    "event.deliverable": "address works again",
}

TRANSLATIONS = {"sv": SV, "en": EN}


def current_language() -> str:
    """The staff member's choice, else the browser's preference, else English."""
    chosen = session.get(SESSION_KEY)
    if chosen in LANGUAGES:
        return chosen
    return request.accept_languages.best_match(LANGUAGES) or "en"


def translate(text: str, **values: object) -> str:
    table = TRANSLATIONS.get(current_language(), {})
    result = table.get(text)
    if result is None:
        # Keys such as "reason.objection" fall back to their readable part.
        prefix, dot, rest = text.partition(".")
        keyed = (
            dot
            and prefix
            in ("reason", "event", "activity", "request", "status", "outcome", "show", "delivery")
            and " " not in text
        )
        result = rest if keyed else text
        if " " not in result:
            result = result.replace("_", " ")  # a code such as legitimate_interest
    return result % values if values else result
