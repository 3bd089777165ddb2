//! The purposes a service may ask consent for: terms of the W3C Data Privacy
//! Vocabulary (DPV, <https://w3id.org/dpv>), written as compact IRIs
//! (`dpv:ResearchAndDevelopment`). Only the terms listed here are accepted,
//! so every receipt names a purpose an owner can look up; docs/consent.md
//! lists them. Adding one is adding a line.

/// One accepted purpose: its DPV term and the broader DPV purpose it falls
/// under, which a receipt carries as `purposeCategory`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Purpose {
    /// The compact IRI, e.g. `dpv:ResearchAndDevelopment`.
    pub term: &'static str,
    /// The DPV parent purpose, e.g. `dpv:ResearchAndDevelopment` for
    /// `dpv:AcademicResearch`.
    pub category: &'static str,
}

const fn purpose(term: &'static str, category: &'static str) -> Purpose {
    Purpose { term, category }
}

/// Every purpose a consent request may name.
pub const PURPOSES: &[Purpose] = &[
    purpose("dpv:ResearchAndDevelopment", "dpv:ResearchAndDevelopment"),
    purpose("dpv:AcademicResearch", "dpv:ResearchAndDevelopment"),
    purpose("dpv:CommercialResearch", "dpv:ResearchAndDevelopment"),
    purpose("dpv:NonCommercialResearch", "dpv:ResearchAndDevelopment"),
    purpose("dpv:ServiceProvision", "dpv:ServiceProvision"),
    purpose("dpv:PersonalisedBenefits", "dpv:ServiceProvision"),
    purpose("dpv:ServicePersonalisation", "dpv:ServiceProvision"),
    purpose("dpv:ServiceOptimisation", "dpv:ServiceProvision"),
    purpose("dpv:RequestedServiceProvision", "dpv:ServiceProvision"),
    purpose("dpv:Personalisation", "dpv:Personalisation"),
    purpose("dpv:Marketing", "dpv:Marketing"),
    purpose("dpv:PersonalisedAdvertising", "dpv:Marketing"),
    purpose("dpv:CommunicationManagement", "dpv:CommunicationManagement"),
    purpose("dpv:EnforceSecurity", "dpv:EnforceSecurity"),
    purpose("dpv:FraudPreventionAndDetection", "dpv:EnforceSecurity"),
    purpose("dpv:LegalCompliance", "dpv:LegalCompliance"),
    purpose("dpv:HumanResourceManagement", "dpv:HumanResourceManagement"),
    purpose("dpv:OrganisationGovernance", "dpv:OrganisationGovernance"),
    purpose("dpv:PublicBenefit", "dpv:PublicBenefit"),
    purpose("dpv:VitalInterest", "dpv:VitalInterest"),
];

/// The purpose whose term is `term` (exact, case-sensitive: DPV terms are IRIs).
pub fn purpose_of(term: &str) -> Option<&'static Purpose> {
    PURPOSES.iter().find(|p| p.term == term)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_terms_are_found_and_others_are_not() {
        assert_eq!(
            purpose_of("dpv:AcademicResearch").map(|p| p.category),
            Some("dpv:ResearchAndDevelopment")
        );
        assert!(purpose_of("dpv:academicresearch").is_none());
        assert!(purpose_of("ResearchAndDevelopment").is_none());
        assert!(purpose_of("").is_none());
    }

    #[test]
    fn every_category_is_itself_a_listed_term() {
        for p in PURPOSES {
            assert!(p.term.starts_with("dpv:"), "{}", p.term);
            assert!(purpose_of(p.category).is_some(), "{}", p.category);
        }
    }
}
